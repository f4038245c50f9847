// Load an allegro_bio model file from C++ and evaluate it once: the path the LAMMPS plugin takes.
//
// Usage: load_model MODEL.pt INPUT.txt
//
// INPUT.txt (whitespace separated, Å):
//   N E                      number of atoms, number of ordered pairs
//   type x y z               N lines: model type index and Cartesian position
//   i j sx sy sz             E lines: ordered pair i->j and the Cartesian shift added to r_j - r_i
// All atoms are local (n_local = N).
//
// Output (stdout, one item a line; numbers with 17 significant digits):
//   meta KEY VALUE           the metadata extra files
//   energy E                 total energy, eV
//   atom_energy i e          per-atom energies, eV
//   force i fx fy fz         forces, eV/Å
//   virial w00 ... w22       virial, eV (row-major)
#include <torch/script.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace {

const char* const kMetadataKeys[] = {"r_max", "type_names", "num_types", "model_dtype", "per_edge_type_cutoff"};

int fail(const std::string& message) {
  std::cerr << "load_model: " << message << std::endl;
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    return fail("usage: load_model MODEL.pt INPUT.txt");
  }
  const std::string model_path = argv[1];
  const std::string input_path = argv[2];

  // Load the model with its metadata.
  torch::jit::ExtraFilesMap extra_files;
  for (const char* key : kMetadataKeys) {
    extra_files[key] = "";
  }
  torch::jit::Module module;
  try {
    module = torch::jit::load(model_path, torch::kCPU, extra_files);
  } catch (const c10::Error& e) {
    return fail("cannot load " + model_path + ": " + e.what());
  }
  for (const char* key : kMetadataKeys) {
    if (extra_files[key].empty()) {
      return fail(std::string("model file has no '") + key + "' metadata");
    }
    std::cout << "meta " << key << " " << extra_files[key] << "\n";
  }
  const long num_types = std::stol(extra_files["num_types"]);

  // Read the structure.
  std::ifstream in(input_path);
  if (!in) {
    return fail("cannot open " + input_path);
  }
  long n_atoms = 0, n_pairs = 0;
  if (!(in >> n_atoms >> n_pairs) || n_atoms <= 0 || n_pairs < 0) {
    return fail("bad header in " + input_path + " (expected 'N E')");
  }
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor pos = torch::empty({n_atoms, 3}, f64);
  torch::Tensor atom_type = torch::empty({n_atoms}, i64);
  torch::Tensor edge_index = torch::empty({2, n_pairs}, i64);
  torch::Tensor edge_shift = torch::empty({n_pairs, 3}, f64);
  auto p = pos.accessor<double, 2>();
  auto t = atom_type.accessor<int64_t, 1>();
  auto ei = edge_index.accessor<int64_t, 2>();
  auto es = edge_shift.accessor<double, 2>();
  for (long a = 0; a < n_atoms; ++a) {
    if (!(in >> t[a] >> p[a][0] >> p[a][1] >> p[a][2])) {
      return fail("bad atom line " + std::to_string(a));
    }
    if (t[a] < 0 || t[a] >= num_types) {
      return fail("atom " + std::to_string(a) + " has type " + std::to_string(t[a]) + " outside [0, num_types)");
    }
  }
  for (long e = 0; e < n_pairs; ++e) {
    if (!(in >> ei[0][e] >> ei[1][e] >> es[e][0] >> es[e][1] >> es[e][2])) {
      return fail("bad pair line " + std::to_string(e));
    }
    if (ei[0][e] < 0 || ei[0][e] >= n_atoms || ei[1][e] < 0 || ei[1][e] >= n_atoms) {
      return fail("pair " + std::to_string(e) + " refers to an atom outside [0, N)");
    }
  }

  // Evaluate. compute() differentiates internally (torch.autograd.grad), so gradients stay on:
  // no NoGradGuard / InferenceMode here.
  c10::AutoGradMode grad_mode(true);
  std::vector<c10::IValue> inputs{pos, atom_type, edge_index, edge_shift, c10::IValue(static_cast<int64_t>(n_atoms)),
                                  c10::IValue(true)};
  c10::IValue out;
  try {
    out = module.get_method("compute")(inputs);
  } catch (const c10::Error& e) {
    return fail(std::string("compute failed: ") + e.what());
  }
  auto result = out.toTuple();
  torch::Tensor atom_energy = result->elements()[0].toTensor().contiguous();
  torch::Tensor forces = result->elements()[1].toTensor().contiguous();
  torch::Tensor virial = result->elements()[2].toTensor().contiguous();
  if (atom_energy.scalar_type() != torch::kFloat64 || forces.scalar_type() != torch::kFloat64 ||
      virial.scalar_type() != torch::kFloat64) {
    return fail("compute did not return float64 tensors");
  }

  auto ae = atom_energy.accessor<double, 1>();
  auto f = forces.accessor<double, 2>();
  auto w = virial.accessor<double, 2>();
  double energy = 0.0;
  for (long a = 0; a < atom_energy.size(0); ++a) {
    energy += ae[a];
  }
  std::printf("energy %.17g\n", energy);
  for (long a = 0; a < atom_energy.size(0); ++a) {
    std::printf("atom_energy %ld %.17g\n", a, ae[a]);
  }
  for (long a = 0; a < forces.size(0); ++a) {
    std::printf("force %ld %.17g %.17g %.17g\n", a, f[a][0], f[a][1], f[a][2]);
  }
  std::printf("virial");
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) {
      std::printf(" %.17g", w[r][c]);
    }
  }
  std::printf("\n");
  std::fflush(stdout);
  return 0;
}

/* allegro_bio LAMMPS plugin: loading and evaluating the deployed model with libtorch.
   See allegro_model.h for the interface and the contract. */

#include "allegro_model.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <cstdlib>
#include <cstring>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace allegro_bio {

namespace {

const char *const kMetadataKeys[] = {"r_max",      "type_names", "num_types",         "model_dtype",
                                     "per_edge_type_cutoff", "units", "format_version",
                                     "allegro_bio_version", "max_edges_per_chunk", "allow_tf32"};

// The AOTInductor package's step is compiled for at least this many pairs and centres
// (allegro_bio.model.aoti.MIN_PAIRS / MIN_CENTERS); smaller chunks are padded with pairs beyond
// every cutoff (PAD_BEYOND_CUTOFF Angstrom past r_max) on centre 0 and an empty centre.
constexpr int64_t kMinPairs = 2;
constexpr int64_t kMinCenters = 2;
constexpr double kPadBeyondCutoff = 1.0;
constexpr int64_t kDefaultChunk = 16384;

bool ends_with(const std::string &text, const std::string &suffix)
{
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<std::string> split(const std::string &text)
{
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string word;
  while (in >> word) out.push_back(word);
  return out;
}

double to_double(const std::string &text, const std::string &what, const std::string &path)
{
  try {
    size_t used = 0;
    double value = std::stod(text, &used);
    if (used != text.size()) throw std::invalid_argument(text);
    return value;
  } catch (const std::exception &) {
    throw std::runtime_error(path + ": bad '" + what + "' metadata value '" + text + "'");
  }
}

}    // namespace

struct AllegroModel::Impl {
  torch::jit::Module module;
  // an AOTInductor package (.pt2): the per-chunk step (allegro_bio.model.aoti), driven from here
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> aoti;
  torch::Tensor cutoff;    // [T, T] float64 (Angstrom), for the package path's pair filter
  double r_max = 0.0;
  int64_t chunk = kDefaultChunk;
  torch::Device device{torch::kCPU};
  torch::Tensor zero_shift;    // cached [capacity, 3] zeros: LAMMPS ghosts are real images
  torch::Tensor out_energy, out_forces;    // outputs kept alive for compute_device
  torch::Tensor last_pos;                  // positions of the last compute_device call

  torch::Tensor shifts(int64_t n_edges)
  {
    if (!zero_shift.defined() || zero_shift.size(0) < n_edges) {
      int64_t cap = std::max<int64_t>(n_edges + n_edges / 20 + 16, 64);
      zero_shift = torch::zeros({cap, 3}, torch::TensorOptions().dtype(torch::kFloat64).device(device));
    }
    return zero_shift.narrow(0, 0, n_edges);
  }

  void run(const torch::Tensor &pos, const torch::Tensor &types, const torch::Tensor &edge_index,
           int64_t n_local, const char *method = "compute")
  {
    if (aoti) {
      try {
        run_package(pos, types, edge_index, n_local);
      } catch (const std::exception &e) {
        throw std::runtime_error(std::string("the model package failed: ") + e.what());
      }
      return;
    }
    // compute() differentiates internally (torch.autograd.grad): gradients must stay on.
    c10::InferenceMode no_inference(false);
    torch::AutoGradMode grad_mode(true);
    std::vector<c10::IValue> inputs{pos, types, edge_index, shifts(edge_index.size(1)),
                                    c10::IValue(n_local), c10::IValue(false)};
    c10::IValue out;
    try {
      out = module.get_method(method)(inputs);
    } catch (const std::exception &e) {
      throw std::runtime_error(std::string("the model's ") + method + "() failed: " + e.what());
    }
    auto result = out.toTuple();
    out_energy = result->elements()[0].toTensor();
    out_forces = result->elements()[1].toTensor();
    if (out_energy.scalar_type() != torch::kFloat64 || out_forces.scalar_type() != torch::kFloat64)
      throw std::runtime_error("the model's compute() did not return float64 energies and forces");
    if (out_energy.dim() != 1 || out_energy.size(0) != n_local || out_forces.dim() != 2 ||
        out_forces.size(0) != pos.size(0) || out_forces.size(1) != 3)
      throw std::runtime_error("the model's compute() returned tensors of unexpected shape");
    out_energy = out_energy.contiguous();
    out_forces = out_forces.contiguous();
  }

  // One chunk through the package: centre energies [C] (float64) and dE/dvec [P, 3].
  std::vector<torch::Tensor> step(torch::Tensor vec, torch::Tensor centre, torch::Tensor centre_type,
                                  torch::Tensor neighbour_type)
  {
    const int64_t p = vec.size(0), c = centre_type.size(0);
    const int64_t pad_p = std::max<int64_t>(0, kMinPairs - p), pad_c = std::max<int64_t>(0, kMinCenters - c);
    if (pad_p > 0 || pad_c > 0) {
      torch::Tensor far = torch::zeros({pad_p, 3}, vec.options());
      far.select(1, 0).fill_(r_max + kPadBeyondCutoff);
      vec = torch::cat({vec, far});
      centre = torch::cat({centre, torch::zeros({pad_p}, centre.options())});
      neighbour_type = torch::cat({neighbour_type, torch::zeros({pad_p}, neighbour_type.options())});
      centre_type = torch::cat({centre_type, torch::zeros({pad_c}, centre_type.options())});
    }
    std::vector<torch::Tensor> out = aoti->run({vec.contiguous(), centre.contiguous(), centre_type.contiguous(),
                                                neighbour_type.contiguous()});
    if (out.size() != 2) throw std::runtime_error("the package's step did not return (energy, gradient)");
    return {out[0].narrow(0, 0, c), out[1].narrow(0, 0, p)};
  }

  // compute() of allegro_bio/model/potential.py (ChunkedPotential) for LAMMPS inputs (ghosts are
  // atoms, so no shifts): pairs within their cutoff centred on local atoms, in chunks of centres.
  void run_package(const torch::Tensor &pos, const torch::Tensor &types, const torch::Tensor &edge_index,
                   int64_t n_local)
  {
    torch::NoGradGuard no_grad;    // the package computes its own gradient
    torch::Tensor i = edge_index[0], j = edge_index[1];
    torch::Tensor vec = pos.index_select(0, j) - pos.index_select(0, i);
    torch::Tensor rc = cutoff.index({types.index_select(0, i), types.index_select(0, j)});
    torch::Tensor keep = ((vec * vec).sum(1) < rc * rc).logical_and(i < n_local);
    torch::Tensor idx = keep.nonzero().squeeze(1);
    i = i.index_select(0, idx);
    j = j.index_select(0, idx);
    vec = vec.index_select(0, idx);
    const int64_t n_edges = i.size(0);
    if (n_edges > chunk) {    // chunks are runs of consecutive centres
      torch::Tensor order = std::get<1>(i.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
      i = i.index_select(0, order);
      j = j.index_select(0, order);
      vec = vec.index_select(0, order);
    }
    torch::Tensor energy = torch::zeros({n_local}, pos.options().dtype(torch::kFloat64));
    torch::Tensor forces = torch::zeros({pos.size(0), 3}, pos.options().dtype(torch::kFloat64));
    // pairs per centre, cumulated, on the host: only when there is more than one chunk (one
    // device-to-host copy per step on a GPU otherwise)
    torch::Tensor cum;
    if (n_edges > chunk) cum = torch::bincount(i, {}, n_local).cumsum(0).to(torch::kCPU).contiguous();
    const int64_t *cum_p = cum.defined() ? cum.data_ptr<int64_t>() : nullptr;
    int64_t c0 = 0, e0 = 0;
    while (c0 < n_local) {
      int64_t c1 = n_local, e1 = n_edges;
      if (n_edges > chunk) {
        c1 = std::upper_bound(cum_p, cum_p + n_local, e0 + chunk) - cum_p;
        c1 = std::max(c1, c0 + 1);
        e1 = cum_p[c1 - 1];
      }
      torch::Tensor ii = i.narrow(0, e0, e1 - e0), jj = j.narrow(0, e0, e1 - e0);
      auto out = step(vec.narrow(0, e0, e1 - e0), ii - c0, types.narrow(0, c0, c1 - c0),
                      types.index_select(0, jj));
      energy.narrow(0, c0, c1 - c0).copy_(out[0]);
      if (e1 > e0) {
        torch::Tensor g = out[1].to(torch::kFloat64);
        forces.index_add_(0, ii, g);
        forces.index_add_(0, jj, -g);
      }
      c0 = c1;
      e0 = e1;
    }
    out_energy = energy;
    out_forces = forces;
  }
};

AllegroModel::AllegroModel() : impl_(new Impl) {}
AllegroModel::~AllegroModel() = default;

std::unique_ptr<AllegroModel> AllegroModel::load(const std::string &path, const std::string &device)
{
  {
    std::ifstream probe(path, std::ios::binary);
    if (!probe.good())
      throw std::runtime_error("cannot open model file '" + path +
                               "' (missing or unreadable; write one with allegro_bio.save() or "
                               "'allegro-bio deploy')");
  }
  std::unique_ptr<AllegroModel> model(new AllegroModel());
  try {
    model->impl_->device = torch::Device(device);
  } catch (const std::exception &e) {
    throw std::runtime_error("bad torch device '" + device + "': " + e.what());
  }
  std::unordered_map<std::string, std::string> extra;
  for (const char *key : kMetadataKeys) extra[key] = "";
  const bool package = ends_with(path, ".pt2");
  if (package) {
    // an AOTInductor package written by allegro_bio.save(model, "model.pt2")
    try {
      const c10::DeviceIndex index = model->impl_->device.is_cpu()
                                         ? static_cast<c10::DeviceIndex>(-1)
                                         : std::max<c10::DeviceIndex>(0, model->impl_->device.index());
      model->impl_->aoti.reset(new torch::inductor::AOTIModelPackageLoader(path, "model", false, 1, index));
      for (const auto &kv : model->impl_->aoti->get_metadata()) extra[kv.first] = kv.second;
    } catch (const std::exception &e) {
      std::string what = e.what();
      throw std::runtime_error("'" + path +
                               "' is not a readable AOTInductor package for device " + device +
                               " (corrupt, or compiled for another device; write one with "
                               "allegro_bio.save(model, 'model.pt2') on this kind of machine): " +
                               what.substr(0, what.find('\n')));
    }
  } else {
    torch::jit::ExtraFilesMap files;
    for (const char *key : kMetadataKeys) files[key] = "";
    try {
      model->impl_->module = torch::jit::load(path, model->impl_->device, files);
    } catch (const std::exception &e) {
      std::string what = e.what();
      auto cut = what.find('\n');
      throw std::runtime_error("'" + path +
                               "' is not a readable TorchScript model file (corrupt or wrong "
                               "format; write one with allegro_bio.save()): " +
                               what.substr(0, cut));
    }
    for (const auto &kv : files) extra[kv.first] = kv.second;
    model->impl_->module.eval();
    // inference only: no weight needs a gradient (autograd then records no weight-gradient work)
    for (auto p : model->impl_->module.parameters()) p.set_requires_grad(false);
  }
#ifdef __GLIBC__
  // keep freed activation arrays in the heap for the next step instead of returning them to the
  // kernel and page-faulting them in again (allegro_bio.runtime.keep_freed_memory, same values)
  if (!std::getenv("ALLEGRO_BIO_KEEP_FREED_MEMORY") || std::string(std::getenv("ALLEGRO_BIO_KEEP_FREED_MEMORY")) != "0") {
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 2147483647);
    mallopt(M_TOP_PAD, 256 << 20);
  }
#endif

  ModelInfo &info = model->info_;
  info.path = path;
  if (extra["format_version"].empty())
    throw std::runtime_error("'" + path + (package ? "' is an AOTInductor package" : "' is a TorchScript file") +
                             " but not an allegro_bio model (no 'format_version' metadata)");
  info.format_version = static_cast<int>(to_double(extra["format_version"], "format_version", path));
  info.package_version = extra["allegro_bio_version"];
  if (info.format_version > kMaxFormatVersion)
    throw std::runtime_error("'" + path + "' has model format " + extra["format_version"] +
                             " (written by allegro_bio " + info.package_version +
                             "); this plugin reads format <= " + std::to_string(kMaxFormatVersion) +
                             ": rebuild it with 'allegro-bio lammps build' from a newer allegro_bio");
  for (const char *key : {"r_max", "type_names", "num_types", "model_dtype", "per_edge_type_cutoff"})
    if (extra[key].empty())
      throw std::runtime_error("'" + path + "': metadata incomplete, missing '" + key + "'");
  info.type_names = split(extra["type_names"]);
  const int ntypes = static_cast<int>(to_double(extra["num_types"], "num_types", path));
  if (static_cast<int>(info.type_names.size()) != ntypes || ntypes < 1)
    throw std::runtime_error("'" + path + "': type_names '" + extra["type_names"] +
                             "' disagrees with num_types " + extra["num_types"]);
  info.r_max = to_double(extra["r_max"], "r_max", path);
  for (const auto &word : split(extra["per_edge_type_cutoff"]))
    info.cutoff.push_back(to_double(word, "per_edge_type_cutoff", path));
  if (static_cast<int>(info.cutoff.size()) != ntypes * ntypes)
    throw std::runtime_error("'" + path + "': per_edge_type_cutoff has " +
                             std::to_string(info.cutoff.size()) + " values, expected " +
                             std::to_string(ntypes * ntypes) + " (num_types squared)");
  for (double c : info.cutoff)
    if (!(c > 0.0) || c > info.r_max + 1e-12)
      throw std::runtime_error("'" + path + "': per_edge_type_cutoff value " + std::to_string(c) +
                               " outside (0, r_max]");
  info.model_dtype = extra["model_dtype"];
  if (info.model_dtype != "float32" && info.model_dtype != "float64")
    throw std::runtime_error("'" + path + "': unknown model_dtype '" + info.model_dtype + "'");
  info.allow_tf32 = extra["allow_tf32"] == "1";
  // as allegro_bio.runtime.set_tf32 on load in Python: the file says whether its float32
  // matmuls may use TF32 tensor cores on CUDA (process-wide in libtorch; nothing on the CPU)
  if (model->impl_->device.is_cuda()) {
    at::globalContext().setAllowTF32CuBLAS(info.allow_tf32);
    at::globalContext().setAllowTF32CuDNN(info.allow_tf32);
  }
  info.units = extra["units"];
  if (!info.units.empty() && info.units != "eV Angstrom")
    throw std::runtime_error("'" + path + "': model units '" + info.units +
                             "' are not 'eV Angstrom'");
  if (package) {
    const int T = ntypes;
    model->impl_->cutoff = torch::from_blob(info.cutoff.data(), {T, T}, torch::TensorOptions().dtype(torch::kFloat64))
                               .clone()
                               .to(model->impl_->device);
    model->impl_->r_max = info.r_max;
    if (!extra["max_edges_per_chunk"].empty())
      model->impl_->chunk = std::max<int64_t>(
          kMinPairs, static_cast<int64_t>(to_double(extra["max_edges_per_chunk"], "max_edges_per_chunk", path)));
    // the package drops pairs beyond their cutoff itself: padded buffers need no special entry
    model->has_padded_ = true;
    model->is_package_ = true;
    return model;
  }
  if (!model->impl_->module.find_method("compute"))
    throw std::runtime_error("'" + path +
                             "': the network has no 'compute' method (not an allegro_bio potential)");
  model->has_padded_ = static_cast<bool>(model->impl_->module.find_method("compute_padded"));
  return model;
}

std::string AllegroModel::device_string() const
{
  return impl_->device.str();
}

void AllegroModel::set_num_threads(int n)
{
  if (n > 0) at::set_num_threads(n);
}

int AllegroModel::get_num_threads()
{
  return at::get_num_threads();
}

void AllegroModel::compute_host(const double *pos, const int64_t *types, int64_t n_all,
                                const int64_t *edge_i, const int64_t *edge_j, int64_t n_edges,
                                int64_t n_local, double *atom_energy, double *forces)
{
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  // from_blob does not copy; compute() only reads its inputs.
  torch::Tensor t_pos = torch::from_blob(const_cast<double *>(pos), {n_all, 3}, f64);
  torch::Tensor t_types = torch::from_blob(const_cast<int64_t *>(types), {n_all}, i64);
  torch::Tensor t_edges = torch::empty({2, n_edges}, i64);
  if (n_edges > 0) {
    std::memcpy(t_edges.data_ptr<int64_t>(), edge_i, sizeof(int64_t) * n_edges);
    std::memcpy(t_edges.data_ptr<int64_t>() + n_edges, edge_j, sizeof(int64_t) * n_edges);
  }
  if (impl_->device.is_cpu()) {
    impl_->run(t_pos, t_types, t_edges, n_local);
  } else {
    impl_->run(t_pos.to(impl_->device), t_types.to(impl_->device), t_edges.to(impl_->device),
               n_local);
  }
  torch::Tensor e = impl_->out_energy.to(torch::kCPU).contiguous();
  torch::Tensor f = impl_->out_forces.to(torch::kCPU).contiguous();
  if (n_local > 0) std::memcpy(atom_energy, e.data_ptr<double>(), sizeof(double) * n_local);
  if (n_all > 0) std::memcpy(forces, f.data_ptr<double>(), sizeof(double) * n_all * 3);
}

void AllegroModel::compute_device(const double *pos, const int64_t *types, int64_t n_all,
                                  const int64_t *edges, int64_t n_edges, int64_t n_local,
                                  bool use_padded_entry, const double **atom_energy,
                                  const double **forces)
{
  if (use_padded_entry && !has_padded_)
    throw std::runtime_error("the model file has no compute_padded() method (written by an older allegro_bio)");
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64).device(impl_->device);
  auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(impl_->device);
  torch::Tensor t_pos = torch::from_blob(const_cast<double *>(pos), {n_all, 3}, f64);
  torch::Tensor t_types = torch::from_blob(const_cast<int64_t *>(types), {n_all}, i64);
  torch::Tensor t_edges = torch::from_blob(const_cast<int64_t *>(edges), {2, n_edges}, i64);
  impl_->run(t_pos, t_types, t_edges, n_local, use_padded_entry ? "compute_padded" : "compute");
  impl_->last_pos = t_pos;
  // the caller (Kokkos) reads the outputs on its own stream: finish torch's work first
  if (impl_->device.is_cuda()) torch::cuda::synchronize(impl_->device.index());
  *atom_energy = impl_->out_energy.data_ptr<double>();
  *forces = impl_->out_forces.data_ptr<double>();
}

void AllegroModel::fdotr_virial(int64_t n_all, double virial[6])
{
  if (!impl_->last_pos.defined() || !impl_->out_forces.defined())
    throw std::runtime_error("fdotr_virial() called before compute_device()");
  torch::Tensor x = impl_->last_pos.narrow(0, 0, n_all);
  torch::Tensor f = impl_->out_forces.narrow(0, 0, n_all);
  torch::Tensor m = torch::mm(x.t(), f).to(torch::kCPU);    // m[a][b] = sum_i x_ia f_ib
  auto w = m.accessor<double, 2>();
  virial[0] = w[0][0];
  virial[1] = w[1][1];
  virial[2] = w[2][2];
  virial[3] = w[0][1];
  virial[4] = w[0][2];
  virial[5] = w[1][2];
}

}    // namespace allegro_bio

/* allegro_bio LAMMPS plugin: the deployed model behind a torch-free interface.

   Only allegro_model.cpp includes libtorch headers, so the LAMMPS-facing sources (and the
   Kokkos variant, which may be compiled by nvcc_wrapper) compile quickly and never see torch.

   The model file is the TorchScript archive written by allegro_bio.save() (or, for a path
   ending in .pt2, an AOTInductor package of the per-chunk step, driven by allegro_model.cpp
   the way allegro_bio.model.potential.ChunkedPotential does in Python); the archive's method
     compute(pos, atom_type, edge_index, edge_shift, n_local, compute_virial)
       -> (atom_energy [n_local] f64 eV, forces [N, 3] f64 eV/A, virial [3, 3] f64 eV)
   is the contract (allegro_bio/model/potential.py). Pairs i->j must have i < n_local; atoms
   at index >= n_local are neighbours only (LAMMPS ghosts). Metadata lives in the archive's
   extra files (allegro_bio/deploy.py). */

#ifndef ALLEGRO_BIO_ALLEGRO_MODEL_H
#define ALLEGRO_BIO_ALLEGRO_MODEL_H

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace allegro_bio {

// Highest deployed-file format this plugin understands (allegro_bio._version.FORMAT_VERSION).
constexpr int kMaxFormatVersion = 1;

struct ModelInfo {
  std::string path;
  std::vector<std::string> type_names;    // model type index -> element symbol
  double r_max = 0.0;                     // largest cutoff, Angstrom
  std::vector<double> cutoff;             // T x T, centre-major: cutoff[ci * T + cj]
  std::string model_dtype;                // "float32" or "float64"
  std::string units;                      // "eV Angstrom"
  std::string package_version;            // allegro_bio version that wrote the file
  int format_version = 0;
  bool allow_tf32 = false;                // TF32 matmuls on CUDA (set for the process on load)
  int num_types() const { return static_cast<int>(type_names.size()); }
};

class AllegroModel {
 public:
  // Loads and validates a model file; throws std::runtime_error with a readable message
  // (missing file, not TorchScript, not an allegro_bio model, newer format, bad metadata).
  // device: "cpu", "cuda" or "cuda:N".
  static std::unique_ptr<AllegroModel> load(const std::string &path, const std::string &device);
  ~AllegroModel();

  const ModelInfo &info() const { return info_; }
  std::string device_string() const;

  // torch intra-op threads of this process (rank).
  static void set_num_threads(int n);
  static int get_num_threads();

  // Host evaluation. pos: n_all x 3 doubles (row-major, Angstrom), types: n_all model type
  // indices, edges: n_edges pairs (edge_i[k] -> edge_j[k], edge_i < n_local). Writes
  // atom_energy[n_local] (eV) and forces[n_all * 3] (eV/A, overwritten). Throws
  // std::runtime_error when the model fails.
  void compute_host(const double *pos, const int64_t *types, int64_t n_all, const int64_t *edge_i,
                    const int64_t *edge_j, int64_t n_edges, int64_t n_local, double *atom_energy,
                    double *forces);

  // Whether the file has compute_padded(): compute() without the cutoff filter, so array shapes
  // follow the (padded) input exactly; every pair must then be centred on a local atom.
  bool has_padded_entry() const { return has_padded_; }

  // Whether the file is an AOTInductor package (.pt2, allegro_bio.model.aoti): its compiled
  // per-chunk step is driven from C++ (pair filter, chunks, force sums) with no TorchScript.
  bool is_package() const { return is_package_; }

  // Evaluation of padded buffers without host copies (Kokkos variant; the host path with
  // `pair_style allegro padding yes`). All pointers live in the model's device memory: pos
  // (n_all x 3 doubles), types (n_all int64), edges (2 x n_edges int64, row-major: first all
  // centres, then all neighbours). use_padded_entry calls compute_padded() (see
  // has_padded_entry()), else compute(). The caller must have finished writing the buffers
  // (Kokkos::fence()). On return the device work is complete and *atom_energy (n_local
  // doubles) and *forces (n_all x 3 doubles) point to memory owned by this object, valid until
  // the next call.
  void compute_device(const double *pos, const int64_t *types, int64_t n_all, const int64_t *edges,
                      int64_t n_edges, int64_t n_local, bool use_padded_entry,
                      const double **atom_energy, const double **forces);

  // Sum over the first n_all atoms of the last compute_device() call of r (x) f, in LAMMPS's
  // virial order xx yy zz xy xz yz (what virial_fdotr_compute() adds), computed on the device.
  void fdotr_virial(int64_t n_all, double virial[6]);

 private:
  bool has_padded_ = false;
  bool is_package_ = false;
  AllegroModel();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  ModelInfo info_;
};

// Padded buffers (the SC'23 fix for allocator churn): capacities grow to 5 % above the need and
// shrink only when more than 1.05^2 too large, so shapes stay fixed over many MD steps.
// Padding atoms sit after the ghosts; padding pairs run from `padding_centre` to the last
// padding atom, which lies beyond every cutoff from it:
//   with compute_padded(): centre = local atom 0, padding atoms at r_max + 1 A (+0.5 A each)
//     along x from atom 0 (finite, beyond the cutoff: the pair contributes exactly zero);
//   with compute(): centre = the second-to-last padding atom (not local: the model drops the
//     pair), padding atoms far away.
constexpr double kPadGrow = 1.05;
constexpr double kPadShrinkAbove = 1.1025;
constexpr double kPadFarAway = 1.0e5;
constexpr double kPadSpacing = 0.5;

inline int64_t padded_capacity(int64_t current, int64_t needed, int64_t extra)
{
  if (current >= needed && current <= kPadShrinkAbove * needed + extra) return current;
  return static_cast<int64_t>(kPadGrow * needed + 1.0) + extra;
}

}    // namespace allegro_bio

#endif

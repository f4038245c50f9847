/* -*- c++ -*- -------------------------------------------------------------
   allegro_bio LAMMPS plugin: pair_style allegro

     pair_style allegro [threads N] [padding yes|no]
     pair_coeff * * model.pt H C N O S      (one element name or NULL per LAMMPS atom type)

   Loads a model file written by allegro_bio.save() with libtorch, maps LAMMPS atom types to
   the model's species by element name, and evaluates the model on each rank's local atoms
   with its ghost atoms passed as ordinary atoms (no image shifts). Requires units metal,
   newton on (ghost forces are reverse-communicated) and builds ordered pairs from a full
   neighbour list within the model's per-species-pair cutoffs.
------------------------------------------------------------------------- */

#ifndef ALLEGRO_BIO_PAIR_ALLEGRO_H
#define ALLEGRO_BIO_PAIR_ALLEGRO_H

#include "pair.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace allegro_bio {
class AllegroModel;
}

namespace LAMMPS_NS {

class PairAllegro : public Pair {
 public:
  PairAllegro(class LAMMPS *);
  ~PairAllegro() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  double memory_usage() override;

 protected:
  virtual void allocate();
  // torch device the model runs on ("cpu" here; the Kokkos variant picks its GPU)
  virtual std::string model_device() const { return "cpu"; }
  void check_units() const;
  void compute_padded_host(int nall, int nlocal, double **x, const int *type);

  std::unique_ptr<allegro_bio::AllegroModel> model;
  std::string model_path;
  int nthreads;                     // torch intra-op threads per rank (pair_style keyword)
  int padding;                      // pad buffers as allegro/kk does (pair_style keyword)
  int ntypes_model;                 // species in the model
  std::vector<int> type_map;        // LAMMPS type (1..ntypes) -> model type index, -1 = NULL
  std::vector<double> cutsq_model;  // model T x T squared cutoffs, centre-major

  // per-step buffers, kept to avoid reallocation
  std::vector<int64_t> atom_types, edge_i, edge_j;
  std::vector<double> atom_energy, model_forces;
  int64_t last_nedges;
  // padded host buffers (padding yes): the allegro/kk scheme on the host, to test it on CPU
  std::vector<double> pad_pos;
  std::vector<int64_t> pad_types, pad_edges;
  int64_t atom_cap, edge_cap;
  bigint nreallocations;
};

}    // namespace LAMMPS_NS

#endif

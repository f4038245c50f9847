// allegro_bio::PackageRunner: an AOTInductor package (.pt2) callable from TorchScript.
//
// TorchScript cannot call an AOTInductor package; this TorchBind class can. openmm-torch's
// TorchForce runs a TorchScript module from C++ every step, and through this class that module
// runs the package's compiled chunk step (allegro_bio.model.aoti) with no Python per step.
//
// The class pickles as the package's bytes, so a TorchScript module holding it can be saved and
// loaded (openmm-torch serialises its module, System XML embeds it) as long as this library is
// loaded in the process (allegro_bio.model.package_runner.load_library()).

#include <torch/custom_class.h>
#include <torch/script.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

// A private temporary directory holding the package under its own file name (the loader finds the
// compiled model inside the archive; the name only has to end in .pt2). Removed once loaded.
struct TempPackageFile {
  std::string dir, path;
  TempPackageFile(const std::string &bytes, const std::string &name) {
    const char *tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/allegro-bio-pt2-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) throw std::runtime_error("allegro_bio.PackageRunner: cannot create a directory under " + templ);
    dir = buf.data();
    path = dir + "/" + name;
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      cleanup();
      throw std::runtime_error("allegro_bio.PackageRunner: cannot write the package to " + path);
    }
  }
  void cleanup() {
    std::remove(path.c_str());
    rmdir(dir.c_str());
  }
  ~TempPackageFile() { cleanup(); }
};

}  // namespace

struct PackageRunner : torch::CustomClassHolder {
  std::string bytes_;  // the whole .pt2 archive: what the class pickles as
  std::string name_;
  int64_t device_index_;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;

  // ``bytes``: the package file's contents; ``name``: its file name (ends in .pt2);
  // ``device_index``: -1 for CPU, else the CUDA device the package was compiled for.
  PackageRunner(std::string bytes, std::string name, int64_t device_index)
      : bytes_(std::move(bytes)), name_(std::move(name)), device_index_(device_index) {
    TempPackageFile file(bytes_, name_);
    try {
      loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(
          file.path, "model", false, 1, static_cast<c10::DeviceIndex>(device_index_));
    } catch (const std::exception &e) {
      throw std::runtime_error("allegro_bio.PackageRunner: '" + name_ + "' is not a readable AOTInductor package: " +
                               std::string(e.what()).substr(0, 400));
    }
  }

  // The package's step on ``inputs`` (vec [P, 3] float64, edge_center [P], center_type [C],
  // neighbor_type [P], int64) → [centre energies [C] float64, dE/dvec [P, 3] float64].
  std::vector<at::Tensor> run(std::vector<at::Tensor> inputs) {
    for (auto &t : inputs) t = t.contiguous();
    return loader_->run(inputs);
  }

  c10::Dict<std::string, std::string> metadata() {
    c10::Dict<std::string, std::string> out;
    for (const auto &kv : loader_->get_metadata()) out.insert(kv.first, kv.second);
    return out;
  }

  int64_t size_bytes() { return static_cast<int64_t>(bytes_.size()); }
};

TORCH_LIBRARY(allegro_bio, m) {
  m.class_<PackageRunner>("PackageRunner")
      .def(torch::init<std::string, std::string, int64_t>())
      .def("run", &PackageRunner::run)
      .def("metadata", &PackageRunner::metadata)
      .def("size_bytes", &PackageRunner::size_bytes)
      .def_pickle(
          [](const c10::intrusive_ptr<PackageRunner> &self) -> std::tuple<std::string, std::string, int64_t> {
            return std::make_tuple(self->bytes_, self->name_, self->device_index_);
          },
          [](std::tuple<std::string, std::string, int64_t> state) -> c10::intrusive_ptr<PackageRunner> {
            return c10::make_intrusive<PackageRunner>(std::get<0>(state), std::get<1>(state), std::get<2>(state));
          });
}

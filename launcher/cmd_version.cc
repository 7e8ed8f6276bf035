// `loom version`: what this binary is (git hash, build type, CUDA on/off, library versions).
#include <cblas.h>
#include <google/protobuf/stubs/common.h>
#include <mpi.h>

#include <iostream>

#include "absl/base/config.h"
#include "absl/strings/str_cat.h"
#include "launcher/command.h"
#include "runtime/build_info.h"
#include "runtime/device.h"

#ifdef LOOM_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>
#endif

namespace loom {
namespace {

absl::Status RunVersion(const std::vector<std::string>& args) {
  FlagSet flags("loom version",
                "Prints the build: git hash, build type, backends and library versions.");
  LOOM_ASSIGN_OR_RETURN(bool run, flags.Parse(args));
  if (!run) return absl::OkStatus();
  std::cout << "loom 0.1.0 (git " << BuildGitHash() << ", " << BuildType() << ")\n";
#ifdef LOOM_WITH_CUDA
  int rt = 0;
  cudaRuntimeGetVersion(&rt);
  std::cout << "cuda: on (runtime " << rt / 1000 << "." << (rt % 1000) / 10
            << ", devices visible: " << CudaDeviceCount() << ")\n";
#else
  std::cout << "cuda: off (CPU-only build)\n";
#endif
  char mpi_version[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(mpi_version, &len);
  std::string mpi(mpi_version, len);
  if (auto nl = mpi.find('\n'); nl != std::string::npos) mpi.resize(nl);
  if (auto comma = mpi.find(','); comma != std::string::npos) mpi.resize(comma);
  std::cout << "mpi: " << mpi << "\n";
  std::cout << "protobuf: " << google::protobuf::internal::VersionString(GOOGLE_PROTOBUF_VERSION)
            << "\n";
  std::cout << "abseil: " << ABSL_LTS_RELEASE_VERSION << "\n";
  std::cout << "openblas: " << openblas_get_config() << "\n";
  return absl::OkStatus();
}

}  // namespace

LOOM_REGISTER_COMMAND(version, "version", "print the build: git hash, backends, library versions",
                      RunVersion);

}  // namespace loom

// Build and machine facts for `swin-umamba info`, behind a C ABI.
#include <torch/version.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <cstring>
#include <string>

namespace {
void copy_out(const std::string& text, char* buffer, size_t capacity) {
  if (capacity == 0) return;
  size_t n = text.size() < capacity - 1 ? text.size() : capacity - 1;
  std::memcpy(buffer, text.data(), n);
  buffer[n] = '\0';
}
}  // namespace

extern "C" {

void ss_libtorch_version(char* buffer, size_t capacity) {
  copy_out(TORCH_VERSION, buffer, capacity);
}

// ATen's own CPU capability, as torch.backends.cpu.get_cpu_capability() prints it.
void ss_aten_cpu_capability(char* buffer, size_t capacity) {
  std::string name;
  try {
    name = at::get_cpu_capability();
  } catch (...) {
    name = "unknown";
  }
  copy_out(name, buffer, capacity);
}

// Instruction set the selective-scan CPU kernel dispatches to on this CPU.
void ss_kernel_isa(char* buffer, size_t capacity) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) {
    copy_out("avx512", buffer, capacity);
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    copy_out("avx2", buffer, capacity);
  } else {
    copy_out("generic", buffer, capacity);
  }
}

int ss_cuda_kernels_built() {
#ifdef SWIN_UMAMBA_WITH_CUDA
  return 1;
#else
  return 0;
#endif
}

}  // extern "C"

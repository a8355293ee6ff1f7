// Standalone check of the CUDA selective scan (../scan_cuda.cu) against the scalar CPU
// kernel (../scan_cpu_kernel.h), which the Rust tests compare with the tch reference and
// with outputs of the official implementation. Needs only nvcc and a GPU; from the
// repository root, scripts/cuda-check builds and runs it (exit status 0 when every case
// matches).
//
// It also times the CUDA forward and backward at Swin-UMamba's stage-2 SS2D shape.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "scan_cpu_kernel.h"

extern "C" int ss_cuda_forward(const SsParams* params, int is_double, void* stream);
extern "C" int ss_cuda_backward(const SsParams* params, int is_double, void* stream);
extern "C" const char* ss_cuda_last_error();

namespace check {

#define CUDA_OK(call)                                                              \
  do {                                                                             \
    cudaError_t status_ = (call);                                                  \
    if (status_ != cudaSuccess) {                                                  \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(status_)); \
      std::exit(2);                                                                \
    }                                                                              \
  } while (0)

enum class Layout { Const, Shared, Grouped };

struct Case {
  int64_t batch, dim, dstate, seqlen;
  Layout b_layout, c_layout;
  int64_t b_groups, c_groups;  // for Grouped
  bool has_d, has_z, has_bias, softplus;
};

// A host buffer and its device copy.
template <typename T>
struct Buffer {
  std::vector<T> host;
  T* device = nullptr;
  explicit Buffer(size_t n = 0) : host(n, T(0)) {
    if (n) CUDA_OK(cudaMalloc(&device, n * sizeof(T)));
    upload();
  }
  ~Buffer() {
    if (device) cudaFree(device);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  void upload() {
    if (device) CUDA_OK(cudaMemcpy(device, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> out(host.size());
    if (device) CUDA_OK(cudaMemcpy(out.data(), device, out.size() * sizeof(T), cudaMemcpyDeviceToHost));
    return out;
  }
};

int64_t groups_of(Layout layout, int64_t groups, int64_t dim) {
  if (layout == Layout::Const) return dim;
  if (layout == Layout::Shared) return 1;
  return groups;
}

// Operand view and element count in the kernel layout (n contiguous).
SsOperand operand_view(Layout layout, int64_t groups, const Case& c, size_t* count) {
  const int64_t n = c.dstate, l = c.seqlen;
  if (layout == Layout::Const) {
    *count = c.dim * n;
    return {nullptr, 0, n, 0, c.dim};
  }
  const int64_t g = layout == Layout::Shared ? 1 : groups;
  *count = c.batch * g * l * n;
  return {nullptr, g * l * n, l * n, n, g};
}

SsGradOperand grad_view(Layout layout, const Case& c, int64_t slices, size_t* count) {
  const int64_t n = c.dstate, l = c.seqlen;
  if (layout == Layout::Const) {
    *count = c.batch * c.dim * n;
    return {nullptr, c.dim * n, 0, n, 0};
  }
  *count = c.batch * slices * l * n;
  return {nullptr, slices * l * n, l * n, 0, n};
}

template <typename T>
void fill(std::vector<T>& v, std::mt19937& rng, double scale, bool uniform) {
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (auto& x : v) x = static_cast<T>(scale * (uniform ? unit(rng) : normal(rng)));
}

template <typename T>
double max_excess(const char* name, const std::vector<T>& gpu, const std::vector<T>& cpu,
                  double rtol, double atol) {
  double worst = -1e300, max_diff = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double diff = std::fabs(double(gpu[i]) - double(cpu[i]));
    max_diff = std::fmax(max_diff, diff);
    worst = std::fmax(worst, diff - (atol + rtol * std::fabs(double(cpu[i]))));
    if (std::isnan(double(gpu[i])) != std::isnan(double(cpu[i]))) worst = 1e300;
  }
  std::printf("    %-12s max |gpu - cpu| %.3e\n", name, max_diff);
  return cpu.empty() ? -1 : worst;
}

template <typename T>
bool run_case(const Case& c, unsigned seed) {
  const double rtol = sizeof(T) == 8 ? 1e-9 : 6e-4;
  const double atol = sizeof(T) == 8 ? 1e-9 : 2e-3;
  std::mt19937 rng(seed);
  const size_t bdl = c.batch * c.dim * c.seqlen;
  const int64_t gb = groups_of(c.b_layout, c.b_groups, c.dim);
  const int64_t gc = groups_of(c.c_layout, c.c_groups, c.dim);
  const int64_t slices = std::lcm(c.b_layout == Layout::Const ? 1 : gb,
                                  c.c_layout == Layout::Const ? 1 : gc);
  size_t nb, nc, ndb, ndc;
  SsOperand bv = operand_view(c.b_layout, c.b_groups, c, &nb);
  SsOperand cv = operand_view(c.c_layout, c.c_groups, c, &nc);
  SsGradOperand dbv = grad_view(c.b_layout, c, slices, &ndb);
  SsGradOperand dcv = grad_view(c.c_layout, c, slices, &ndc);

  Buffer<T> u(bdl), delta(bdl), A(c.dim * c.dstate), B(nb), C(nc), D(c.has_d ? c.dim : 0),
      z(c.has_z ? bdl : 0), bias(c.has_bias ? c.dim : 0), dout(bdl);
  fill(u.host, rng, 1.0, false);
  fill(delta.host, rng, 0.5, true);
  fill(A.host, rng, -0.5, true);
  fill(B.host, rng, 1.0, false);
  fill(C.host, rng, 1.0, false);
  fill(D.host, rng, 1.0, false);
  fill(z.host, rng, 1.0, false);
  fill(bias.host, rng, 0.5, true);
  fill(dout.host, rng, 1.0, false);
  for (Buffer<T>* b : {&u, &delta, &A, &B, &C, &D, &z, &bias, &dout}) b->upload();

  Buffer<T> out(bdl), last(c.batch * c.dim * c.dstate), du(bdl), ddelta(bdl),
      dA(c.batch * c.dim * c.dstate), dD(c.has_d ? c.batch * c.dim : 0), dz(c.has_z ? bdl : 0),
      dbias(c.has_bias ? c.batch * c.dim : 0), dB(ndb), dC(ndc);

  auto params = [&](bool device) {
    auto ptr = [device](auto& buffer) -> void* {
      if (buffer.host.empty()) return nullptr;
      return device ? static_cast<void*>(buffer.device) : static_cast<void*>(buffer.host.data());
    };
    SsParams p{};
    p.batch = c.batch;
    p.dim = c.dim;
    p.seqlen = c.seqlen;
    p.dstate = c.dstate;
    p.slices = slices;
    p.delta_softplus = c.softplus;
    p.u = ptr(u);
    p.delta = ptr(delta);
    p.A = ptr(A);
    p.B = bv;
    p.B.ptr = ptr(B);
    p.C = cv;
    p.C.ptr = ptr(C);
    p.D = ptr(D);
    p.z = ptr(z);
    p.delta_bias = ptr(bias);
    p.out = ptr(out);
    p.last_state = ptr(last);
    p.dout = ptr(dout);
    p.du = ptr(du);
    p.ddelta = ptr(ddelta);
    p.dA = ptr(dA);
    p.dD = ptr(dD);
    p.dz = ptr(dz);
    p.ddelta_bias = ptr(dbias);
    p.dB = dbv;
    p.dB.ptr = ptr(dB);
    p.dC = dcv;
    p.dC.ptr = ptr(dC);
    return p;
  };

  const SsParams host = params(false);
  forward_range<ScalarVec<T>>(host, 0, c.batch * c.dim);
  backward_range<ScalarVec<T>>(host, 0, c.batch * slices);

  const SsParams dev = params(true);
  if (ss_cuda_forward(&dev, sizeof(T) == 8, nullptr) != 0 ||
      ss_cuda_backward(&dev, sizeof(T) == 8, nullptr) != 0) {
    std::printf("    CUDA error: %s\n", ss_cuda_last_error());
    return false;
  }
  CUDA_OK(cudaDeviceSynchronize());

  double worst = -1;
  const std::pair<const char*, Buffer<T>*> outputs[] = {
      {"y", &out}, {"last_state", &last}, {"grad_u", &du}, {"grad_delta", &ddelta},
      {"grad_A", &dA}, {"grad_D", &dD}, {"grad_z", &dz}, {"grad_bias", &dbias},
      {"grad_B", &dB}, {"grad_C", &dC}};
  for (const auto& [name, buffer] : outputs) {
    worst = std::fmax(worst, max_excess(name, buffer->download(), buffer->host, rtol, atol));
  }
  return worst <= 0;
}

// Times forward and forward+backward at B=2, G=4, D=768, N=16, L=6400 in fp32.
void time_stage2() {
  const Case c{2, 768, 16, 6400, Layout::Grouped, Layout::Grouped, 4, 4, true, false, true, true};
  const size_t bdl = c.batch * c.dim * c.seqlen;
  size_t nb, ndb;
  SsOperand view = operand_view(Layout::Grouped, 4, c, &nb);
  SsGradOperand grad = grad_view(Layout::Grouped, c, 4, &ndb);
  Buffer<float> u(bdl), delta(bdl), A(c.dim * c.dstate), B(nb), C(nb), D(c.dim), bias(c.dim),
      out(bdl), dout(bdl), du(bdl), ddelta(bdl), dA(c.batch * c.dim * c.dstate),
      dD(c.batch * c.dim), dbias(c.batch * c.dim), dB(ndb), dC(ndb);
  std::mt19937 rng(1);
  fill(u.host, rng, 1.0, false);
  fill(delta.host, rng, 0.5, true);
  fill(A.host, rng, -0.5, true);
  fill(B.host, rng, 1.0, false);
  fill(C.host, rng, 1.0, false);
  for (Buffer<float>* b : {&u, &delta, &A, &B, &C}) b->upload();

  SsParams p{};
  p.batch = c.batch, p.dim = c.dim, p.seqlen = c.seqlen, p.dstate = c.dstate, p.slices = 4;
  p.delta_softplus = 1;
  p.u = u.device, p.delta = delta.device, p.A = A.device;
  p.B = view, p.B.ptr = B.device, p.C = view, p.C.ptr = C.device;
  p.D = D.device, p.delta_bias = bias.device, p.out = out.device, p.dout = dout.device;
  p.du = du.device, p.ddelta = ddelta.device, p.dA = dA.device, p.dD = dD.device;
  p.ddelta_bias = dbias.device;
  p.dB = grad, p.dB.ptr = dB.device, p.dC = grad, p.dC.ptr = dC.device;

  cudaEvent_t start, stop;
  CUDA_OK(cudaEventCreate(&start));
  CUDA_OK(cudaEventCreate(&stop));
  for (int pass = 0; pass < 2; ++pass) {
    const bool with_backward = pass == 1;
    ss_cuda_forward(&p, 0, nullptr);  // warm-up
    CUDA_OK(cudaEventRecord(start));
    const int iters = 10;
    for (int i = 0; i < iters; ++i) {
      ss_cuda_forward(&p, 0, nullptr);
      if (with_backward) ss_cuda_backward(&p, 0, nullptr);
    }
    CUDA_OK(cudaEventRecord(stop));
    CUDA_OK(cudaEventSynchronize(stop));
    float ms = 0;
    CUDA_OK(cudaEventElapsedTime(&ms, start, stop));
    std::printf("stage2 fp32 %s: %.3f ms per call\n", with_backward ? "fwd+bwd" : "forward",
                ms / iters);
  }
}

}  // namespace check

int main() {
  using check::Case;
  using check::Layout;
  const Case cases[] = {
      {1, 4, 4, 1, Layout::Shared, Layout::Shared, 1, 1, true, false, false, false},
      {2, 8, 16, 37, Layout::Grouped, Layout::Grouped, 4, 4, true, true, true, true},
      {2, 8, 16, 100, Layout::Grouped, Layout::Grouped, 1, 1, false, false, false, true},
      {1, 12, 20, 65, Layout::Const, Layout::Shared, 1, 1, true, true, false, false},
      {2, 16, 40, 64, Layout::Shared, Layout::Grouped, 1, 4, false, true, true, true},
      {1, 8, 256, 33, Layout::Grouped, Layout::Const, 2, 1, true, false, true, false},
      {2, 64, 16, 1000, Layout::Grouped, Layout::Grouped, 4, 4, true, true, true, true},
  };
  bool ok = true;
  unsigned seed = 1;
  for (const Case& c : cases) {
    for (int precision = 0; precision < 2; ++precision) {
      std::printf("case B=%lld D=%lld N=%lld L=%lld %s\n", (long long)c.batch, (long long)c.dim,
                  (long long)c.dstate, (long long)c.seqlen, precision ? "fp32" : "fp64");
      const bool passed = precision ? check::run_case<float>(c, seed++)
                                    : check::run_case<double>(c, seed++);
      std::printf("  %s\n", passed ? "ok" : "MISMATCH");
      ok = ok && passed;
    }
  }
  check::time_stage2();
  std::printf("%s\n", ok ? "all cases match" : "some cases differ");
  return ok ? 0 : 1;
}

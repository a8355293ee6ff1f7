// Scalar selective scan: the fp64 path (std::exp, exact to rounding) and the fp32 fallback
// for CPUs without AVX2.
#include "scan_cpu_kernel.h"

void ss_cpu_forward_range_f64(const SsParams& p, int64_t begin, int64_t end) {
  forward_range<ScalarVec<double>>(p, begin, end);
}

void ss_cpu_backward_range_f64(const SsParams& p, int64_t begin, int64_t end) {
  backward_range<ScalarVec<double>>(p, begin, end);
}

void ss_cpu_forward_range_f32_scalar(const SsParams& p, int64_t begin, int64_t end) {
  forward_range<ScalarVec<float>>(p, begin, end);
}

void ss_cpu_backward_range_f32_scalar(const SsParams& p, int64_t begin, int64_t end) {
  backward_range<ScalarVec<float>>(p, begin, end);
}

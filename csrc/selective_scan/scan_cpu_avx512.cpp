// fp32 selective scan with AVX-512: one zmm register contains 16 states.
#include <immintrin.h>

#include "scan_cpu_kernel.h"

namespace {

struct Avx512Vec {
  using scalar = float;
  using vec = __m512;
  static constexpr int width = 16;

  static __mmask16 mask(int count) {
    return count >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << count) - 1u);
  }
  static vec zero() { return _mm512_setzero_ps(); }
  static vec set1(float x) { return _mm512_set1_ps(x); }
  static vec load(const float* ptr, int count) {
    return _mm512_maskz_loadu_ps(mask(count), ptr);
  }
  static vec load_full(const float* ptr) { return _mm512_loadu_ps(ptr); }
  static void store(float* ptr, vec v, int count) { _mm512_mask_storeu_ps(ptr, mask(count), v); }
  static void store_full(float* ptr, vec v) { _mm512_storeu_ps(ptr, v); }
  static vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
  static vec sub(vec a, vec b) { return _mm512_sub_ps(a, b); }
  static vec div(vec a, vec b) { return _mm512_div_ps(a, b); }
  static vec max(vec a, vec b) { return _mm512_max_ps(a, b); }
  static vec neg(vec a) { return _mm512_sub_ps(_mm512_setzero_ps(), a); }
  static vec abs(vec a) { return _mm512_abs_ps(a); }
  // Comparisons return all-ones lanes where true, so blend works the same for AVX2.
  static vec gt(vec a, vec b) { return mask_to_vec(_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)); }
  static vec eq(vec a, vec b) { return mask_to_vec(_mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ)); }
  static vec mask_to_vec(__mmask16 m) {
    return _mm512_castsi512_ps(_mm512_maskz_set1_epi32(m, -1));
  }
  // Lanes of `if_true` where `cond` is all-ones, else `if_false`.
  static vec blend(vec if_false, vec if_true, vec cond) {
    const __mmask16 m = _mm512_cmpneq_epi32_mask(_mm512_castps_si512(cond), _mm512_setzero_si512());
    return _mm512_mask_blend_ps(m, if_false, if_true);
  }
  static vec softplus(vec x) { return approx_softplus<Avx512Vec>(x); }
  static vec softplus_grad(vec x) { return approx_softplus_grad<Avx512Vec>(x); }
  static vec mul(vec a, vec b) { return _mm512_mul_ps(a, b); }
  static vec fma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  static float hsum(vec v) { return _mm512_reduce_add_ps(v); }

  // Returns the vector whose lane j is the sum of the 16 lanes of p[j]. Each level adds
  // pairs of vectors after moving matching halves, quarters, then pairs of lanes together.
  static vec transpose_sum(const vec* p) {
    vec halves[8], quarters[4], pairs[2];
    for (int i = 0; i < 8; ++i) {  // 256-bit halves: lanes 0-7 sum p[2i], 8-15 sum p[2i+1]
      halves[i] = _mm512_add_ps(_mm512_shuffle_f32x4(p[2 * i], p[2 * i + 1], 0x44),
                                _mm512_shuffle_f32x4(p[2 * i], p[2 * i + 1], 0xEE));
    }
    for (int i = 0; i < 4; ++i) {  // 128-bit quarter t sums p[4i + t]
      quarters[i] = _mm512_add_ps(_mm512_shuffle_f32x4(halves[2 * i], halves[2 * i + 1], 0x88),
                                  _mm512_shuffle_f32x4(halves[2 * i], halves[2 * i + 1], 0xDD));
    }
    for (int i = 0; i < 2; ++i) {  // quarter t: lanes 0-1 sum p[8i + t], lanes 2-3 p[8i + 4 + t]
      pairs[i] = _mm512_add_ps(
          _mm512_shuffle_ps(quarters[2 * i], quarters[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
          _mm512_shuffle_ps(quarters[2 * i], quarters[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    }
    // Lane 4t + e now contains the sum of p[4e + t]; the permutation puts it in lane 4e + t.
    const vec sums = _mm512_add_ps(_mm512_shuffle_ps(pairs[0], pairs[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_ps(pairs[0], pairs[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_ps(order, sums);
  }

  // exp(x) by range reduction x = k*ln2 + r with |r| <= ln2/2, a degree-7 Taylor polynomial
  // for exp(r) (truncation error below 6e-9 relative) and scalef for the factor 2^k, which
  // also produces 0 and inf at the ends of the clamped range.
  static vec exp(vec x) {
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);  // exp(-104) is below the smallest denormal
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);    // exp(89) is above FLT_MAX
    const vec k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // ln 2 split into a high part exact in a float product with k and a low remainder.
    vec r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
    vec poly = _mm512_set1_ps(1.0f / 5040.0f);
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.0f / 720.0f));
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.0f / 120.0f));
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.0f / 24.0f));
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.0f / 6.0f));
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(0.5f));
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.0f));
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(poly, k);
  }
};

}  // namespace

void ss_cpu_forward_range_f32_avx512(const SsParams& p, int64_t begin, int64_t end) {
  forward_range<Avx512Vec>(p, begin, end);
}

void ss_cpu_backward_range_f32_avx512(const SsParams& p, int64_t begin, int64_t end) {
  backward_range<Avx512Vec>(p, begin, end);
}

// Exposes the vector math to the accuracy tests through the C ABI: function 0 is exp,
// 1 softplus, 2 the derivative of softplus.
extern "C" void ss_cpu_math_f32_avx512(int function, const float* x, float* y, int64_t count) {
  for (int64_t i = 0; i < count; i += 16) {
    const int n = count - i < 16 ? static_cast<int>(count - i) : 16;
    const auto v = Avx512Vec::load(x + i, n);
    const auto r = function == 0   ? Avx512Vec::exp(v)
                   : function == 1 ? Avx512Vec::softplus(v)
                                   : Avx512Vec::softplus_grad(v);
    Avx512Vec::store(y + i, r, n);
  }
}

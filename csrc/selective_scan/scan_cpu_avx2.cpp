// fp32 selective scan with AVX2 and FMA: one ymm register contains 8 states.
#include <immintrin.h>

#include "scan_cpu_kernel.h"

namespace {

struct Avx2Vec {
  using scalar = float;
  using vec = __m256;
  static constexpr int width = 8;

  static __m256i mask(int count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static vec zero() { return _mm256_setzero_ps(); }
  static vec set1(float x) { return _mm256_set1_ps(x); }
  static vec load(const float* ptr, int count) {
    return count >= 8 ? _mm256_loadu_ps(ptr) : _mm256_maskload_ps(ptr, mask(count));
  }
  static vec load_full(const float* ptr) { return _mm256_loadu_ps(ptr); }
  static void store(float* ptr, vec v, int count) {
    if (count >= 8) {
      _mm256_storeu_ps(ptr, v);
    } else {
      _mm256_maskstore_ps(ptr, mask(count), v);
    }
  }
  static void store_full(float* ptr, vec v) { _mm256_storeu_ps(ptr, v); }
  static vec add(vec a, vec b) { return _mm256_add_ps(a, b); }
  static vec sub(vec a, vec b) { return _mm256_sub_ps(a, b); }
  static vec div(vec a, vec b) { return _mm256_div_ps(a, b); }
  static vec max(vec a, vec b) { return _mm256_max_ps(a, b); }
  static vec neg(vec a) { return _mm256_sub_ps(_mm256_setzero_ps(), a); }
  static vec abs(vec a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static vec gt(vec a, vec b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static vec eq(vec a, vec b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
  // Lanes of `if_true` where `cond` is all-ones, else `if_false`.
  static vec blend(vec if_false, vec if_true, vec cond) {
    return _mm256_blendv_ps(if_false, if_true, cond);
  }
  static vec softplus(vec x) { return approx_softplus<Avx2Vec>(x); }
  static vec softplus_grad(vec x) { return approx_softplus_grad<Avx2Vec>(x); }
  static vec mul(vec a, vec b) { return _mm256_mul_ps(a, b); }
  static vec fma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
  static float hsum(vec v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  // Returns the vector whose lane j is the sum of the 8 lanes of p[j]. Each level adds pairs
  // of vectors after moving matching halves, then pairs of lanes together.
  static vec transpose_sum(const vec* p) {
    vec halves[4], pairs[2];
    for (int i = 0; i < 4; ++i) {  // 128-bit half t sums p[2i + t]
      halves[i] = _mm256_add_ps(_mm256_permute2f128_ps(p[2 * i], p[2 * i + 1], 0x20),
                                _mm256_permute2f128_ps(p[2 * i], p[2 * i + 1], 0x31));
    }
    for (int i = 0; i < 2; ++i) {  // half t: lanes 0-1 sum p[4i + t], lanes 2-3 p[4i + 2 + t]
      pairs[i] = _mm256_add_ps(
          _mm256_shuffle_ps(halves[2 * i], halves[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
          _mm256_shuffle_ps(halves[2 * i], halves[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    }
    // Lane 4t + e now contains the sum of p[2e + t]; the permutation puts it in lane 2e + t.
    const vec sums = _mm256_add_ps(_mm256_shuffle_ps(pairs[0], pairs[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm256_shuffle_ps(pairs[0], pairs[1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm256_permutevar8x32_ps(sums, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  }

  // exp(x) by range reduction x = k*ln2 + r with |r| <= ln2/2, a degree-7 Taylor polynomial
  // for exp(r), and 2^k applied as two exponent-bit factors 2^(k/2) so that k down to -150
  // gives denormals or 0 and k = 128 gives inf, as exp does.
  static vec exp(vec x) {
    x = _mm256_max_ps(_mm256_set1_ps(-104.0f), x);  // exp(-104) is below the smallest denormal
    x = _mm256_min_ps(_mm256_set1_ps(89.0f), x);    // exp(89) is above FLT_MAX
    const vec k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // ln 2 split into a high part exact in a float product with k and a low remainder.
    vec r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    vec poly = _mm256_set1_ps(1.0f / 5040.0f);
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(1.0f / 720.0f));
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(1.0f / 120.0f));
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(1.0f / 24.0f));
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(1.0f / 6.0f));
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(0.5f));
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(1.0f));
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(1.0f));
    const __m256i k_int = _mm256_cvtps_epi32(k);
    const __m256i k_half = _mm256_srai_epi32(k_int, 1);
    const __m256i k_rest = _mm256_sub_epi32(k_int, k_half);
    const __m256i bias = _mm256_set1_epi32(127);
    const vec scale_half = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k_half, bias), 23));
    const vec scale_rest = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k_rest, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(poly, scale_half), scale_rest);
  }
};

}  // namespace

void ss_cpu_forward_range_f32_avx2(const SsParams& p, int64_t begin, int64_t end) {
  forward_range<Avx2Vec>(p, begin, end);
}

void ss_cpu_backward_range_f32_avx2(const SsParams& p, int64_t begin, int64_t end) {
  backward_range<Avx2Vec>(p, begin, end);
}

// Exposes the vector math to the accuracy tests through the C ABI: function 0 is exp,
// 1 softplus, 2 the derivative of softplus.
extern "C" void ss_cpu_math_f32_avx2(int function, const float* x, float* y, int64_t count) {
  for (int64_t i = 0; i < count; i += 8) {
    const int n = count - i < 8 ? static_cast<int>(count - i) : 8;
    const auto v = Avx2Vec::load(x + i, n);
    const auto r = function == 0   ? Avx2Vec::exp(v)
                   : function == 1 ? Avx2Vec::softplus(v)
                                   : Avx2Vec::softplus_grad(v);
    Avx2Vec::store(y + i, r, n);
  }
}

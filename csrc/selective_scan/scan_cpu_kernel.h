// CPU selective scan, templated on a vector type that covers a block of states.
//
// Each channel (b, d) is processed block by block over the state dimension. A block of W
// states keeps its hidden state h in one vector register while the loop runs over the
// sequence, and adds its sum over states at each position to a scalar buffer y[l].
// The file includes no torch header: the ISA files compile it with their own -m flags, the
// CUDA checker compiles it with nvcc's host compiler, and everything here has internal
// linkage, so instantiations built for different instruction sets never merge at link time.
#ifndef SWIN_UMAMBA_SCAN_CPU_KERNEL_H
#define SWIN_UMAMBA_SCAN_CPU_KERNEL_H

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "scan_params.h"

namespace {

// torch.nn.functional.softplus with beta 1 returns x unchanged above this threshold.
constexpr double kSoftplusThreshold = 20.0;

template <typename T>
inline T softplus(T x) {
  return x > T(kSoftplusThreshold) ? x : std::log1p(std::exp(x));
}

// Derivative of softplus at x, matching torch's softplus backward (1 above the threshold).
template <typename T>
inline T softplus_grad(T x) {
  return x > T(kSoftplusThreshold) ? T(1) : T(1) / (T(1) + std::exp(-x));
}

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// Per-thread buffers of one channel; sized once per task and reused across channels.
template <typename T>
struct ChannelScratch {
  std::vector<T> dt_raw, dt, y, dy, ddt, du;
  std::vector<T> a, h;  // (blocks, seqlen, W) for the backward

  void resize_forward(int64_t seqlen) {
    dt_raw.resize(seqlen);
    dt.resize(seqlen);
    y.resize(seqlen);
  }
  void resize_backward(int64_t seqlen, int64_t blocks, int width) {
    resize_forward(seqlen);
    dy.resize(seqlen);
    ddt.resize(seqlen);
    du.resize(seqlen);
    a.resize(static_cast<size_t>(blocks * seqlen * width));
    h.resize(static_cast<size_t>(blocks * seqlen * width));
  }
};

template <typename T>
inline const T* operand_row(const SsOperand& op, const SsParams& p, int64_t b, int64_t d) {
  const int64_t group = d / (p.dim / op.groups);
  return static_cast<const T*>(op.ptr) + b * op.batch_stride + group * op.group_stride;
}

template <typename T>
inline T* grad_row(const SsGradOperand& op, int64_t b, int64_t slice, int64_t d) {
  return static_cast<T*>(op.ptr) + b * op.batch_stride + slice * op.slice_stride +
         d * op.channel_stride;
}

// Fills dt_raw (delta plus bias) and dt (after the optional softplus) for channel (b, d),
// W positions at a time.
template <typename V>
inline void discretise_delta(const SsParams& p, int64_t b, int64_t d,
                             ChannelScratch<typename V::scalar>& s) {
  using T = typename V::scalar;
  const int64_t L = p.seqlen;
  const T* delta = static_cast<const T*>(p.delta) + (b * p.dim + d) * L;
  const auto bias = V::set1(p.delta_bias ? static_cast<const T*>(p.delta_bias)[d] : T(0));
  for (int64_t l = 0; l < L; l += V::width) {
    const int count = static_cast<int>(std::min<int64_t>(V::width, L - l));
    const auto x = V::add(V::load(delta + l, count), bias);
    V::store(s.dt_raw.data() + l, x, count);
    V::store(s.dt.data() + l, p.delta_softplus ? V::softplus(x) : x, count);
  }
}

// Turns the gradient with respect to dt (s.ddt) into the gradient with respect to the raw
// delta, in place, W positions at a time.
template <typename V>
inline void softplus_backward(ChannelScratch<typename V::scalar>& s, int64_t L) {
  for (int64_t l = 0; l < L; l += V::width) {
    const int count = static_cast<int>(std::min<int64_t>(V::width, L - l));
    const auto grad = V::softplus_grad(V::load(s.dt_raw.data() + l, count));
    V::store(s.ddt.data() + l, V::mul(V::load(s.ddt.data() + l, count), grad), count);
  }
}

// Softplus and its derivative for the vector types, from their exp, with torch's threshold
// of 20 above which softplus is the identity. log1p(e) for e = exp(-|x|) in (0, 1] uses
// log(1 + e) = k*ln2 + 2*atanh((m - 1)/(m + 1)) with 1 + e = 2^k * m, m in [1/sqrt2, sqrt2],
// then scales by e/((1 + e) - 1) to undo the rounding of 1 + e (exact when 1 + e == 1).
template <typename V>
inline typename V::vec approx_softplus(typename V::vec x) {
  using Vec = typename V::vec;
  const Vec one = V::set1(1.0f);
  const Vec e = V::exp(V::neg(V::abs(x)));
  const Vec sum = V::add(one, e);
  const Vec high = V::gt(sum, V::set1(1.41421356f));
  const Vec m = V::blend(sum, V::mul(sum, V::set1(0.5f)), high);
  const Vec k_ln2 = V::blend(V::zero(), V::set1(0.693147181f), high);
  const Vec t = V::div(V::sub(m, one), V::add(m, one));
  const Vec t2 = V::mul(t, t);
  Vec series = V::set1(1.0f / 9.0f);
  series = V::fma(series, t2, V::set1(1.0f / 7.0f));
  series = V::fma(series, t2, V::set1(1.0f / 5.0f));
  series = V::fma(series, t2, V::set1(1.0f / 3.0f));
  series = V::fma(series, t2, one);
  const Vec log_sum = V::fma(V::mul(V::set1(2.0f), t), series, k_ln2);
  const Vec rounded = V::sub(sum, one);
  const Vec exact_one = V::eq(rounded, V::zero());
  const Vec log1p = V::blend(V::mul(log_sum, V::div(e, V::blend(rounded, one, exact_one))), e,
                             exact_one);
  const Vec soft = V::add(V::max(x, V::zero()), log1p);
  return V::blend(soft, x, V::gt(x, V::set1(static_cast<float>(kSoftplusThreshold))));
}

template <typename V>
inline typename V::vec approx_softplus_grad(typename V::vec x) {
  using Vec = typename V::vec;
  const Vec one = V::set1(1.0f);
  const Vec sig = V::div(one, V::add(one, V::exp(V::neg(x))));
  return V::blend(sig, one, V::gt(x, V::set1(static_cast<float>(kSoftplusThreshold))));
}

// Runs the recurrence of one block of states [n0, n0 + count) over the sequence and adds
// sum_n C*h to s.y. When a_out/h_out are given, stores exp(dt*A) and h for every position.
template <typename V>
inline typename V::vec scan_block(const SsParams& p, int64_t b, int64_t d, int64_t n0,
                                  int count, ChannelScratch<typename V::scalar>& s,
                                  typename V::scalar* a_out, typename V::scalar* h_out) {
  using T = typename V::scalar;
  using Vec = typename V::vec;
  const int64_t L = p.seqlen;
  const T* u = static_cast<const T*>(p.u) + (b * p.dim + d) * L;
  const Vec a_row = V::load(static_cast<const T*>(p.A) + d * p.dstate + n0, count);
  const T* b_row = operand_row<T>(p.B, p, b, d) + n0;
  const T* c_row = operand_row<T>(p.C, p, b, d) + n0;
  const int64_t b_step = p.B.seq_stride;
  const int64_t c_step = p.C.seq_stride;
  Vec h = V::zero();
  // C*h of W consecutive positions, reduced over states together by transpose_sum: far
  // fewer shuffles than one horizontal sum per position.
  Vec products[V::width];
  for (int64_t l0 = 0; l0 < L; l0 += V::width) {
    const int steps = static_cast<int>(std::min<int64_t>(V::width, L - l0));
    for (int j = 0; j < steps; ++j) {
      const int64_t l = l0 + j;
      const T dt = s.dt[l];
      const Vec decay = V::exp(V::mul(V::set1(dt), a_row));
      const Vec b_l = V::load(b_row + l * b_step, count);
      h = V::fma(decay, h, V::mul(b_l, V::set1(dt * u[l])));
      const Vec c_l = V::load(c_row + l * c_step, count);
      products[j] = V::mul(c_l, h);
      if (a_out) {
        V::store_full(a_out + l * V::width, decay);
        V::store_full(h_out + l * V::width, h);
      }
    }
    for (int j = steps; j < V::width; ++j) products[j] = V::zero();
    T* y = s.y.data() + l0;
    V::store(y, V::add(V::load(y, steps), V::transpose_sum(products)), steps);
  }
  return h;
}

// Forward of the channels with flat index (b * dim + d) in [begin, end).
template <typename V>
void forward_range(const SsParams& p, int64_t begin, int64_t end) {
  using T = typename V::scalar;
  const int64_t L = p.seqlen;
  const int64_t N = p.dstate;
  ChannelScratch<T> s;
  s.resize_forward(L);
  for (int64_t index = begin; index < end; ++index) {
    const int64_t b = index / p.dim;
    const int64_t d = index % p.dim;
    discretise_delta<V>(p, b, d, s);
    std::fill(s.y.begin(), s.y.end(), T(0));
    for (int64_t n0 = 0; n0 < N; n0 += V::width) {
      const int count = static_cast<int>(std::min<int64_t>(V::width, N - n0));
      const auto h = scan_block<V>(p, b, d, n0, count, s, nullptr, nullptr);
      if (p.last_state) {
        V::store(static_cast<T*>(p.last_state) + index * N + n0, h, count);
      }
    }
    const T* u = static_cast<const T*>(p.u) + index * L;
    const T* z = p.z ? static_cast<const T*>(p.z) + index * L : nullptr;
    const T skip = p.D ? static_cast<const T*>(p.D)[d] : T(0);
    T* out = static_cast<T*>(p.out) + index * L;
    for (int64_t l = 0; l < L; ++l) {
      const T y = s.y[l] + skip * u[l];
      out[l] = z ? y * z[l] * sigmoid(z[l]) : y;
    }
  }
}

// Reverse pass of one state block; accumulates into s.ddt, s.du, the B/C gradient rows and
// returns the block's gradient with respect to A.
template <typename V>
inline typename V::vec reverse_block(const SsParams& p, int64_t b, int64_t d, int64_t slice,
                                     int64_t n0, int count, ChannelScratch<typename V::scalar>& s,
                                     const typename V::scalar* a_buf,
                                     const typename V::scalar* h_buf) {
  using T = typename V::scalar;
  using Vec = typename V::vec;
  const int64_t L = p.seqlen;
  const T* u = static_cast<const T*>(p.u) + (b * p.dim + d) * L;
  const Vec a_row = V::load(static_cast<const T*>(p.A) + d * p.dstate + n0, count);
  const T* b_row = operand_row<T>(p.B, p, b, d) + n0;
  const T* c_row = operand_row<T>(p.C, p, b, d) + n0;
  T* db_row = grad_row<T>(p.dB, b, slice, d) + n0;
  T* dc_row = grad_row<T>(p.dC, b, slice, d) + n0;
  Vec g = V::zero();  // gradient of the loss with respect to h at position l
  Vec da_acc = V::zero();
  for (int64_t l = L - 1; l >= 0; --l) {
    const T dt = s.dt[l];
    const Vec c_l = V::load(c_row + l * p.C.seq_stride, count);
    const Vec h = V::load_full(h_buf + l * V::width);
    if (l + 1 < L) {
      g = V::fma(V::load_full(a_buf + (l + 1) * V::width), g, V::mul(c_l, V::set1(s.dy[l])));
    } else {
      g = V::mul(c_l, V::set1(s.dy[l]));
    }
    T* dc = dc_row + l * p.dC.seq_stride;
    V::store(dc, V::fma(h, V::set1(s.dy[l]), V::load(dc, count)), count);

    // h_l = a_l * h_{l-1} + dt*u*B_l with a_l = exp(dt*A).
    const Vec h_prev = l > 0 ? V::load_full(h_buf + (l - 1) * V::width) : V::zero();
    const Vec decay_grad = V::mul(V::mul(g, h_prev), V::load_full(a_buf + l * V::width));
    da_acc = V::fma(decay_grad, V::set1(dt), da_acc);
    const Vec b_l = V::load(b_row + l * p.B.seq_stride, count);
    const T g_dot_b = V::hsum(V::mul(g, b_l));
    s.ddt[l] += V::hsum(V::mul(decay_grad, a_row)) + u[l] * g_dot_b;
    s.du[l] += dt * g_dot_b;
    T* db = db_row + l * p.dB.seq_stride;
    V::store(db, V::fma(g, V::set1(dt * u[l]), V::load(db, count)), count);
  }
  return da_acc;
}

// Backward of one channel: recomputes the forward storing exp(dt*A) and h per block, then
// runs the reverse scan.
template <typename V>
void backward_channel(const SsParams& p, int64_t b, int64_t d, int64_t slice,
                      ChannelScratch<typename V::scalar>& s) {
  using T = typename V::scalar;
  const int64_t L = p.seqlen;
  const int64_t N = p.dstate;
  const int64_t index = b * p.dim + d;
  discretise_delta<V>(p, b, d, s);
  std::fill(s.y.begin(), s.y.end(), T(0));
  int64_t block = 0;
  for (int64_t n0 = 0; n0 < N; n0 += V::width, ++block) {
    const int count = static_cast<int>(std::min<int64_t>(V::width, N - n0));
    T* a_buf = s.a.data() + block * L * V::width;
    T* h_buf = s.h.data() + block * L * V::width;
    scan_block<V>(p, b, d, n0, count, s, a_buf, h_buf);
  }

  const T* u = static_cast<const T*>(p.u) + index * L;
  const T* z = p.z ? static_cast<const T*>(p.z) + index * L : nullptr;
  const T* dout = static_cast<const T*>(p.dout) + index * L;
  const T skip = p.D ? static_cast<const T*>(p.D)[d] : T(0);
  T d_skip = 0;
  for (int64_t l = 0; l < L; ++l) {
    const T y = s.y[l] + skip * u[l];
    T dy = dout[l];
    if (z) {
      const T sig = sigmoid(z[l]);
      static_cast<T*>(p.dz)[index * L + l] = dout[l] * y * sig * (T(1) + z[l] * (T(1) - sig));
      dy = dout[l] * z[l] * sig;
    }
    s.dy[l] = dy;
    s.du[l] = skip * dy;
    s.ddt[l] = 0;
    d_skip += dy * u[l];
  }

  block = 0;
  for (int64_t n0 = 0; n0 < N; n0 += V::width, ++block) {
    const int count = static_cast<int>(std::min<int64_t>(V::width, N - n0));
    const T* a_buf = s.a.data() + block * L * V::width;
    const T* h_buf = s.h.data() + block * L * V::width;
    const auto da = reverse_block<V>(p, b, d, slice, n0, count, s, a_buf, h_buf);
    V::store(static_cast<T*>(p.dA) + index * N + n0, da, count);
  }

  if (p.delta_softplus) softplus_backward<V>(s, L);
  T* du = static_cast<T*>(p.du) + index * L;
  T* ddelta = static_cast<T*>(p.ddelta) + index * L;
  T d_bias = 0;
  for (int64_t l = 0; l < L; ++l) {
    du[l] = s.du[l];
    ddelta[l] = s.ddt[l];
    d_bias += s.ddt[l];
  }
  if (p.dD) static_cast<T*>(p.dD)[index] = d_skip;
  if (p.ddelta_bias) static_cast<T*>(p.ddelta_bias)[index] = d_bias;
}

// Backward of the (batch, slice) tasks with flat index (b * slices + slice) in [begin, end).
template <typename V>
void backward_range(const SsParams& p, int64_t begin, int64_t end) {
  using T = typename V::scalar;
  const int64_t blocks = (p.dstate + V::width - 1) / V::width;
  const int64_t per_slice = p.dim / p.slices;
  ChannelScratch<T> s;
  s.resize_backward(p.seqlen, blocks, V::width);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t b = task / p.slices;
    const int64_t slice = task % p.slices;
    for (int64_t d = slice * per_slice; d < (slice + 1) * per_slice; ++d) {
      backward_channel<V>(p, b, d, slice, s);
    }
  }
}

// Scalar "vector" of width 1: the exact fp64 path and the fp32 fallback without AVX2.
template <typename T>
struct ScalarVec {
  using scalar = T;
  using vec = T;
  static constexpr int width = 1;
  static vec zero() { return T(0); }
  static vec set1(T x) { return x; }
  static vec load(const T* ptr, int) { return *ptr; }
  static vec load_full(const T* ptr) { return *ptr; }
  static void store(T* ptr, vec v, int) { *ptr = v; }
  static void store_full(T* ptr, vec v) { *ptr = v; }
  static vec add(vec a, vec b) { return a + b; }
  static vec mul(vec a, vec b) { return a * b; }
  static vec fma(vec a, vec b, vec c) { return a * b + c; }
  static vec exp(vec x) { return std::exp(x); }
  static T hsum(vec v) { return v; }
  static vec transpose_sum(const vec* v) { return v[0]; }
  static vec softplus(vec x) { return ::softplus(x); }
  static vec softplus_grad(vec x) { return ::softplus_grad(x); }
};

}  // namespace

#endif  // SWIN_UMAMBA_SCAN_CPU_KERNEL_H

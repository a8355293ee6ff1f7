// CUDA selective scan behind a C ABI: plain CUDA C++ on the pointers and strides of
// scan_params.h, no torch headers, so the file builds with nvcc alone.
//
// One warp scans one channel (b, d). Lane i keeps states i, i + 32, ... (at most
// kMaxStatesPerLane of them) in registers, and a warp reduction forms sum_n C*h at each
// position.
// The backward stores the hidden state every kChunk positions in a scratch buffer, then
// walks the chunks in reverse, recomputing each chunk's states from its checkpoint.
// Gradients of B and C are shared by the channels of a group and added with atomicAdd.
//
// NOTE: written and reviewed without a GPU or nvcc; check/cuda_check.cu compares it with
// the CPU kernel and must pass on a GPU machine before these kernels are trusted.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "scan_params.h"

namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;
constexpr int kMaxStatesPerLane = 8;  // dstate up to 256
constexpr int kChunk = 32;            // positions between stored states in the backward
// torch.nn.functional.softplus with beta 1 returns x unchanged above this threshold.
constexpr float kSoftplusThreshold = 20.0f;

thread_local std::string cuda_error;

__device__ inline float exp_t(float x) { return expf(x); }
__device__ inline double exp_t(double x) { return exp(x); }
__device__ inline float log1p_t(float x) { return log1pf(x); }
__device__ inline double log1p_t(double x) { return log1p(x); }

template <typename T>
__device__ inline T softplus(T x) {
  return x > T(kSoftplusThreshold) ? x : log1p_t(exp_t(x));
}

template <typename T>
__device__ inline T sigmoid(T x) {
  return T(1) / (T(1) + exp_t(-x));
}

template <typename T>
__device__ inline T warp_sum(T v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

template <typename T>
__device__ inline const T* operand_row(const SsOperand& op, const SsParams& p, int64_t b,
                                       int64_t d) {
  const int64_t group = d / (p.dim / op.groups);
  return static_cast<const T*>(op.ptr) + b * op.batch_stride + group * op.group_stride;
}

template <typename T>
__device__ inline T* grad_row(const SsGradOperand& op, const SsParams& p, int64_t b,
                              int64_t d) {
  const int64_t slice = d / (p.dim / p.slices);
  return static_cast<T*>(op.ptr) + b * op.batch_stride + slice * op.slice_stride +
         d * op.channel_stride;
}

// Per-channel constants and pointers shared by the kernels.
template <typename T>
struct Channel {
  int64_t b, d, index;
  const T* u;
  const T* delta;
  const T* b_row;
  const T* c_row;
  T bias, skip;
  T a[kMaxStatesPerLane];

  __device__ Channel(const SsParams& p, int64_t channel, int lane) {
    index = channel;
    b = channel / p.dim;
    d = channel % p.dim;
    u = static_cast<const T*>(p.u) + channel * p.seqlen;
    delta = static_cast<const T*>(p.delta) + channel * p.seqlen;
    b_row = operand_row<T>(p.B, p, b, d);
    c_row = operand_row<T>(p.C, p, b, d);
    bias = p.delta_bias ? static_cast<const T*>(p.delta_bias)[d] : T(0);
    skip = p.D ? static_cast<const T*>(p.D)[d] : T(0);
    for (int k = 0; k < kMaxStatesPerLane; ++k) {
      const int64_t n = lane + k * kWarp;
      a[k] = n < p.dstate ? static_cast<const T*>(p.A)[d * p.dstate + n] : T(0);
    }
  }

  __device__ T dt_raw(int64_t l) const { return delta[l] + bias; }
  __device__ T dt(const SsParams& p, int64_t l) const {
    const T x = dt_raw(l);
    return p.delta_softplus ? softplus(x) : x;
  }
  // One step of the recurrence for this lane's states; returns this lane's sum of C*h.
  __device__ T step(const SsParams& p, int64_t l, T dt, int lane, T* h) const {
    T partial = 0;
    const T dtu = dt * u[l];
    for (int k = 0; k < kMaxStatesPerLane; ++k) {
      const int64_t n = lane + k * kWarp;
      if (n >= p.dstate) break;
      h[k] = exp_t(dt * a[k]) * h[k] + dtu * b_row[l * p.B.seq_stride + n];
      partial += c_row[l * p.C.seq_stride + n] * h[k];
    }
    return partial;
  }
};

template <typename T>
__global__ void forward_kernel(SsParams p) {
  const int lane = threadIdx.x % kWarp;
  const int64_t channel =
      static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (channel >= p.batch * p.dim) return;  // whole warps exit together
  const Channel<T> ch(p, channel, lane);
  const T* z = p.z ? static_cast<const T*>(p.z) + channel * p.seqlen : nullptr;
  T* out = static_cast<T*>(p.out) + channel * p.seqlen;
  T h[kMaxStatesPerLane] = {};
  for (int64_t l = 0; l < p.seqlen; ++l) {
    const T y = warp_sum(ch.step(p, l, ch.dt(p, l), lane, h)) + ch.skip * ch.u[l];
    if (lane == 0) out[l] = z ? y * z[l] * sigmoid(z[l]) : y;
  }
  if (p.last_state) {
    T* last = static_cast<T*>(p.last_state) + channel * p.dstate;
    for (int k = 0; k < kMaxStatesPerLane; ++k) {
      const int64_t n = lane + k * kWarp;
      if (n < p.dstate) last[n] = h[k];
    }
  }
}

// Layout of the backward scratch: for each channel, the states before each chunk
// (chunks × dstate), then dy for every position (seqlen).
struct Scratch {
  int64_t chunks;
  int64_t per_channel;
};

__host__ __device__ inline Scratch scratch_layout(const SsParams& p) {
  const int64_t chunks = (p.seqlen + kChunk - 1) / kChunk;
  return {chunks, chunks * p.dstate + p.seqlen};
}

template <typename T>
__global__ void backward_kernel(SsParams p, T* scratch) {
  const int lane = threadIdx.x % kWarp;
  const int64_t channel =
      static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (channel >= p.batch * p.dim) return;
  const Channel<T> ch(p, channel, lane);
  const int64_t L = p.seqlen, N = p.dstate;
  const Scratch layout = scratch_layout(p);
  T* checkpoints = scratch + channel * layout.per_channel;  // (chunks, N)
  T* dy_buf = checkpoints + layout.chunks * N;               // (L)
  const T* z = p.z ? static_cast<const T*>(p.z) + channel * L : nullptr;
  const T* dout = static_cast<const T*>(p.dout) + channel * L;

  // Pass 1: forward, storing the state before each chunk, dy and dz.
  T h[kMaxStatesPerLane] = {};
  T d_skip = 0;
  for (int64_t l = 0; l < L; ++l) {
    if (l % kChunk == 0) {
      for (int k = 0; k < kMaxStatesPerLane; ++k) {
        const int64_t n = lane + k * kWarp;
        if (n < N) checkpoints[(l / kChunk) * N + n] = h[k];
      }
    }
    const T y = warp_sum(ch.step(p, l, ch.dt(p, l), lane, h)) + ch.skip * ch.u[l];
    T dy = dout[l];
    if (z) {
      const T sig = sigmoid(z[l]);
      if (lane == 0) {
        static_cast<T*>(p.dz)[channel * L + l] = dout[l] * y * sig * (T(1) + z[l] * (T(1) - sig));
      }
      dy = dout[l] * z[l] * sig;
    }
    if (lane == 0) dy_buf[l] = dy;
    d_skip += dy * ch.u[l];
  }
  __syncwarp();

  // Pass 2: chunks in reverse; recompute the chunk's states, then the reverse recurrence.
  T* db_row = grad_row<T>(p.dB, p, ch.b, ch.d);
  T* dc_row = grad_row<T>(p.dC, p, ch.b, ch.d);
  T g[kMaxStatesPerLane] = {};
  T decay_next[kMaxStatesPerLane] = {};  // exp(dt*A) at the position after the current one
  T da[kMaxStatesPerLane] = {};
  T d_bias = 0;
  T states[kChunk][kMaxStatesPerLane];
  for (int64_t chunk = layout.chunks - 1; chunk >= 0; --chunk) {
    const int64_t start = chunk * kChunk;
    const int64_t end = start + kChunk < L ? start + kChunk : L;
    T hc[kMaxStatesPerLane];
    for (int k = 0; k < kMaxStatesPerLane; ++k) {
      const int64_t n = lane + k * kWarp;
      hc[k] = n < N ? checkpoints[chunk * N + n] : T(0);
    }
    for (int64_t l = start; l < end; ++l) {
      ch.step(p, l, ch.dt(p, l), lane, hc);
      for (int k = 0; k < kMaxStatesPerLane; ++k) states[l - start][k] = hc[k];
    }
    for (int64_t l = end - 1; l >= start; --l) {
      const T raw = ch.dt_raw(l);
      const T dt = p.delta_softplus ? softplus(raw) : raw;
      const T dy = dy_buf[l];
      const T u = ch.u[l];
      T ddt_partial = 0, du_partial = 0;
      for (int k = 0; k < kMaxStatesPerLane; ++k) {
        const int64_t n = lane + k * kWarp;
        if (n >= N) break;
        const T c = ch.c_row[l * p.C.seq_stride + n];
        const T bb = ch.b_row[l * p.B.seq_stride + n];
        g[k] = decay_next[k] * g[k] + dy * c;
        const T h_l = states[l - start][k];
        const T h_prev = l > start ? states[l - start - 1][k] : checkpoints[chunk * N + n];
        const T decay = exp_t(dt * ch.a[k]);
        const T decay_grad = g[k] * h_prev * decay;
        atomicAdd(dc_row + l * p.dC.seq_stride + n, dy * h_l);
        atomicAdd(db_row + l * p.dB.seq_stride + n, g[k] * dt * u);
        da[k] += decay_grad * dt;
        ddt_partial += decay_grad * ch.a[k] + g[k] * bb * u;
        du_partial += g[k] * bb * dt;
        decay_next[k] = decay;
      }
      const T ddt = warp_sum(ddt_partial);
      const T du = warp_sum(du_partial) + ch.skip * dy;
      const T ddelta = p.delta_softplus
                           ? (raw > T(kSoftplusThreshold) ? ddt : ddt * sigmoid(raw))
                           : ddt;
      if (lane == 0) {
        static_cast<T*>(p.du)[channel * L + l] = du;
        static_cast<T*>(p.ddelta)[channel * L + l] = ddelta;
      }
      d_bias += ddelta;
    }
  }
  for (int k = 0; k < kMaxStatesPerLane; ++k) {
    const int64_t n = lane + k * kWarp;
    if (n < N) static_cast<T*>(p.dA)[channel * N + n] = da[k];
  }
  if (lane == 0) {
    if (p.dD) static_cast<T*>(p.dD)[channel] = d_skip;
    if (p.ddelta_bias) static_cast<T*>(p.ddelta_bias)[channel] = d_bias;
  }
}

bool check(cudaError_t status, const char* operation) {
  if (status == cudaSuccess) return true;
  cuda_error = std::string(operation) + ": " + cudaGetErrorString(status);
  return false;
}

int check_sizes(const SsParams* p) {
  if (p->dstate > kWarp * kMaxStatesPerLane) {
    cuda_error = "the CUDA selective scan supports dstate up to " +
                 std::to_string(kWarp * kMaxStatesPerLane) + ", got " +
                 std::to_string(p->dstate);
    return 1;
  }
  return 0;
}

unsigned blocks_for(const SsParams* p) {
  const int64_t channels = p->batch * p->dim;
  return static_cast<unsigned>((channels + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

template <typename T>
int forward(const SsParams* p, cudaStream_t stream) {
  if (check_sizes(p) != 0) return 1;
  if (p->batch * p->dim == 0 || p->seqlen == 0) return 0;
  forward_kernel<T><<<blocks_for(p), kWarp * kWarpsPerBlock, 0, stream>>>(*p);
  return check(cudaGetLastError(), "forward kernel launch") ? 0 : 1;
}

template <typename T>
int backward(const SsParams* p, cudaStream_t stream) {
  if (check_sizes(p) != 0) return 1;
  if (p->batch * p->dim == 0 || p->seqlen == 0) return 0;
  const Scratch layout = scratch_layout(*p);
  T* scratch = nullptr;
  const size_t bytes = sizeof(T) * static_cast<size_t>(p->batch * p->dim * layout.per_channel);
  if (!check(cudaMallocAsync(reinterpret_cast<void**>(&scratch), bytes, stream),
             "backward scratch allocation")) {
    return 1;
  }
  backward_kernel<T><<<blocks_for(p), kWarp * kWarpsPerBlock, 0, stream>>>(*p, scratch);
  const bool launched = check(cudaGetLastError(), "backward kernel launch");
  const bool freed = check(cudaFreeAsync(scratch, stream), "backward scratch release");
  return launched && freed ? 0 : 1;
}

}  // namespace

extern "C" {

// Runs the forward on `stream` (a cudaStream_t, null for the legacy default stream).
// Returns 0, or 1 with a message for ss_cuda_last_error.
int ss_cuda_forward(const SsParams* params, int is_double, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  return is_double ? forward<double>(params, s) : forward<float>(params, s);
}

// Runs the backward; every gradient buffer must be zeroed (B and C gradients accumulate).
int ss_cuda_backward(const SsParams* params, int is_double, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  return is_double ? backward<double>(params, s) : backward<float>(params, s);
}

const char* ss_cuda_last_error() { return cuda_error.c_str(); }

}  // extern "C"

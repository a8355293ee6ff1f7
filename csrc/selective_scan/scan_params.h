// Plain C description of one selective-scan call: sizes, pointers and strides, shared by the
// CPU kernels, the CUDA kernels and the torch wrapper. No torch types, so the CUDA files and
// the standalone checker compile with nvcc alone.
//
// Layout contract (the torch wrapper establishes it):
// - u, delta, z, out, du, ddelta, dz: (batch, dim, seqlen), contiguous.
// - A, dA: (dim, dstate) and (batch, dim, dstate) contiguous; D, delta_bias: (dim).
// - B and C are read through SsOperand with the state index n contiguous (stride 1): the
//   wrapper transposes (B, N, L) and (B, G, N, L) to (B, L, N) and (B, G, L, N).
// - All floating pointers of one call have the same dtype (float or double), picked by the
//   entry point's suffix.
#ifndef SWIN_UMAMBA_SCAN_PARAMS_H
#define SWIN_UMAMBA_SCAN_PARAMS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Input B or C. Channel d of batch b reads state n at position l from
// ptr + b*batch_stride + g*group_stride + l*seq_stride + n, with g = d / (dim / groups).
// Constant (D, N) operands use groups = dim, group_stride = dstate and zero batch and
// sequence strides.
typedef struct SsOperand {
  const void* ptr;
  int64_t batch_stride;
  int64_t group_stride;
  int64_t seq_stride;
  int64_t groups;
} SsOperand;

// Gradient buffer for B or C that the backward accumulates into. Channel d of batch b in
// channel slice s adds its gradient for position l to
// ptr + b*batch_stride + s*slice_stride + d*channel_stride + l*seq_stride + n.
// Slices are contiguous channel ranges that each lie inside one group of every grouped
// operand. The CPU backward gives each (batch, slice) task a private region, so it needs
// no atomics, and the wrapper sums the slices of a group afterwards.
typedef struct SsGradOperand {
  void* ptr;
  int64_t batch_stride;
  int64_t slice_stride;
  int64_t channel_stride;
  int64_t seq_stride;
} SsGradOperand;

typedef struct SsParams {
  int64_t batch;
  int64_t dim;
  int64_t seqlen;
  int64_t dstate;
  // Number of channel slices per batch element for the backward (divides dim).
  int64_t slices;
  int delta_softplus;

  const void* u;
  const void* delta;
  const void* A;
  SsOperand B;
  SsOperand C;
  const void* D;           // may be null
  const void* z;           // may be null
  const void* delta_bias;  // may be null

  // Forward outputs.
  void* out;         // gated output (batch, dim, seqlen)
  void* last_state;  // (batch, dim, dstate), may be null

  // Backward input and outputs; every gradient buffer must be zeroed by the caller.
  const void* dout;
  void* du;
  void* ddelta;            // gradient with respect to the raw delta (before bias/softplus)
  void* dA;                // (batch, dim, dstate), summed over batch by the caller
  void* dD;                // (batch, dim), may be null when D is null
  void* dz;                // (batch, dim, seqlen), may be null when z is null
  void* ddelta_bias;       // (batch, dim), may be null when delta_bias is null
  SsGradOperand dB;
  SsGradOperand dC;
} SsParams;

#ifdef __cplusplus
}
#endif

#endif  // SWIN_UMAMBA_SCAN_PARAMS_H

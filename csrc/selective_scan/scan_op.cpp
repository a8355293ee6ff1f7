// The selective scan as a torch autograd Function, and the C shim that Rust calls.
//
// The shim takes `at::Tensor*` (tch's C_tensor), returns 0 on success, and catches every
// C++ exception into a thread-local message, so no exception crosses the FFI boundary.
// Rust checks shapes, dtypes and devices before calling; the TORCH_CHECKs here guard the
// layout contract of scan_params.h against other callers.
#include <ATen/Parallel.h>
#include <c10/core/DeviceGuard.h>
#include <torch/torch.h>

#include <atomic>
#include <numeric>
#include <string>

#include "scan_params.h"

// CPU range kernels, one set per instruction set (scan_cpu_*.cpp).
void ss_cpu_forward_range_f64(const SsParams&, int64_t, int64_t);
void ss_cpu_backward_range_f64(const SsParams&, int64_t, int64_t);
void ss_cpu_forward_range_f32_scalar(const SsParams&, int64_t, int64_t);
void ss_cpu_backward_range_f32_scalar(const SsParams&, int64_t, int64_t);
void ss_cpu_forward_range_f32_avx2(const SsParams&, int64_t, int64_t);
void ss_cpu_backward_range_f32_avx2(const SsParams&, int64_t, int64_t);
void ss_cpu_forward_range_f32_avx512(const SsParams&, int64_t, int64_t);
void ss_cpu_backward_range_f32_avx512(const SsParams&, int64_t, int64_t);

#ifdef SWIN_UMAMBA_WITH_CUDA
extern "C" int ss_cuda_forward(const SsParams* params, int is_double, void* stream);
extern "C" int ss_cuda_backward(const SsParams* params, int is_double, void* stream);
extern "C" const char* ss_cuda_last_error();
#endif

namespace {

using RangeKernel = void (*)(const SsParams&, int64_t, int64_t);

struct CpuKernels {
  RangeKernel forward;
  RangeKernel backward;
  const char* isa;
};

const CpuKernels kAvx512 = {ss_cpu_forward_range_f32_avx512, ss_cpu_backward_range_f32_avx512,
                            "avx512"};
const CpuKernels kAvx2 = {ss_cpu_forward_range_f32_avx2, ss_cpu_backward_range_f32_avx2, "avx2"};
const CpuKernels kScalar = {ss_cpu_forward_range_f32_scalar, ss_cpu_backward_range_f32_scalar,
                            "scalar"};

bool cpu_has(const std::string& isa) {
  __builtin_cpu_init();
  if (isa == "avx512") {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
  }
  if (isa == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return isa == "scalar";
}

const CpuKernels* best_f32_kernels() {
  if (cpu_has("avx512")) return &kAvx512;
  if (cpu_has("avx2")) return &kAvx2;
  return &kScalar;
}

// The fp32 kernel set in use: the best one for this CPU unless ss_scan_set_cpu_isa chose a
// lower one (for tests and benchmarks).
std::atomic<const CpuKernels*> active_f32_kernels{best_f32_kernels()};

const CpuKernels& f32_kernels() { return *active_f32_kernels.load(); }

thread_local std::string last_error;

// B or C in the kernel layout: the state index contiguous, groups explicit.
struct PreparedOperand {
  at::Tensor data;
  SsOperand view;
  int64_t groups_for_slicing;  // 1 for constant operands, which need no slice alignment
};

PreparedOperand prepare_operand(const at::Tensor& t, at::ScalarType kind, int64_t dim) {
  PreparedOperand out;
  if (t.dim() == 2) {  // (D, N)
    out.data = t.to(kind).contiguous();
    const int64_t n = t.size(1);
    out.view = {out.data.data_ptr(), 0, n, 0, dim};
    out.groups_for_slicing = 1;
  } else if (t.dim() == 3) {  // (B, N, L) -> (B, L, N)
    out.data = t.to(kind).transpose(1, 2).contiguous();
    const int64_t n = t.size(1), l = t.size(2);
    out.view = {out.data.data_ptr(), l * n, 0, n, 1};
    out.groups_for_slicing = 1;
  } else {  // (B, G, N, L) -> (B, G, L, N)
    TORCH_CHECK(t.dim() == 4, "B and C must have rank 2, 3 or 4");
    out.data = t.to(kind).transpose(2, 3).contiguous();
    const int64_t g = t.size(1), n = t.size(2), l = t.size(3);
    out.view = {out.data.data_ptr(), g * l * n, l * n, n, g};
    out.groups_for_slicing = g;
  }
  return out;
}

// Gradient buffer for B or C in the layout SsGradOperand describes.
// `input` is the prepared operand, already in the compute dtype.
at::Tensor make_grad_buffer(const at::Tensor& input, const SsParams& p, SsGradOperand* view) {
  const auto options = input.options();
  const int64_t n = p.dstate, l = p.seqlen;
  at::Tensor buffer;
  if (input.dim() == 2) {
    buffer = torch::zeros({p.batch, p.dim, n}, options);
    *view = {buffer.data_ptr(), p.dim * n, 0, n, 0};
  } else {
    buffer = torch::zeros({p.batch, p.slices, l, n}, options);
    *view = {buffer.data_ptr(), p.slices * l * n, l * n, 0, n};
  }
  return buffer;
}

// Sums the slice buffer back to the input's layout: (D, N), (B, N, L) or (B, G, N, L).
at::Tensor reduce_grad_buffer(const at::Tensor& buffer, const at::Tensor& input,
                              const SsParams& p) {
  if (input.dim() == 2) return buffer.sum(0);
  const int64_t groups = input.dim() == 4 ? input.size(1) : 1;
  auto grouped = buffer.view({p.batch, groups, p.slices / groups, p.seqlen, p.dstate}).sum(2);
  auto transposed = grouped.transpose(2, 3);  // (B, G, N, L)
  return input.dim() == 3 ? transposed.squeeze(1) : transposed;
}

// Picks the number of channel slices per batch element for the backward: a multiple of
// every group count (so a slice never spans two groups) that divides dim, the smallest one
// giving at least two tasks per thread.
int64_t choose_slices(int64_t batch, int64_t dim, int64_t groups_b, int64_t groups_c) {
  const int64_t base = std::lcm(groups_b, groups_c);
  const int64_t target_tasks = 2 * static_cast<int64_t>(at::get_num_threads());
  int64_t best = base;
  for (int64_t slices = base; slices <= dim; slices += base) {
    if (dim % slices != 0) continue;
    best = slices;
    if (batch * slices >= target_tasks) break;
  }
  return best;
}

struct Inputs {
  at::Tensor u, delta, A, D, z, delta_bias;
  PreparedOperand B, C;
  at::ScalarType kind;
};

Inputs prepare_inputs(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                      const at::Tensor& B, const at::Tensor& C, const at::Tensor& D,
                      const at::Tensor& z, const at::Tensor& delta_bias) {
  Inputs in;
  in.kind = u.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t dim = u.size(1);
  auto convert = [&](const at::Tensor& t) {
    return t.defined() ? t.to(in.kind).contiguous() : at::Tensor();
  };
  in.u = convert(u);
  in.delta = convert(delta);
  in.A = convert(A);
  in.D = convert(D);
  in.z = convert(z);
  in.delta_bias = convert(delta_bias);
  in.B = prepare_operand(B, in.kind, dim);
  in.C = prepare_operand(C, in.kind, dim);
  return in;
}

SsParams base_params(const Inputs& in, bool delta_softplus) {
  SsParams p{};
  p.batch = in.u.size(0);
  p.dim = in.u.size(1);
  p.seqlen = in.u.size(2);
  p.dstate = in.A.size(1);
  p.slices = 1;
  p.delta_softplus = delta_softplus ? 1 : 0;
  p.u = in.u.data_ptr();
  p.delta = in.delta.data_ptr();
  p.A = in.A.data_ptr();
  p.B = in.B.view;
  p.C = in.C.view;
  p.D = in.D.defined() ? in.D.data_ptr() : nullptr;
  p.z = in.z.defined() ? in.z.data_ptr() : nullptr;
  p.delta_bias = in.delta_bias.defined() ? in.delta_bias.data_ptr() : nullptr;
  return p;
}

// Runs the forward or backward over `tasks` units on the tensors' device.
void launch(const SsParams& p, at::ScalarType kind, const at::Device& device, bool backward,
            int64_t tasks) {
  if (device.is_cuda()) {
#ifdef SWIN_UMAMBA_WITH_CUDA
    // NOTE: the kernels run on the legacy default stream, which synchronises with every
    // other blocking stream. tch runs its ops there unless a caller sets another stream.
    const int status = backward ? ss_cuda_backward(&p, kind == at::kDouble, nullptr)
                                : ss_cuda_forward(&p, kind == at::kDouble, nullptr);
    TORCH_CHECK(status == 0, "selective scan CUDA kernel failed: ", ss_cuda_last_error());
    return;
#else
    TORCH_CHECK(false,
                "the selective scan was built without CUDA kernels (no nvcc at build time); "
                "move the inputs to the CPU or rebuild on a machine with nvcc");
#endif
  }
  TORCH_CHECK(device.is_cpu(), "selective scan: unsupported device ", device);
  RangeKernel kernel;
  if (kind == at::kDouble) {
    kernel = backward ? ss_cpu_backward_range_f64 : ss_cpu_forward_range_f64;
  } else {
    kernel = backward ? f32_kernels().backward : f32_kernels().forward;
  }
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) { kernel(p, begin, end); });
}

std::pair<at::Tensor, at::Tensor> scan_forward(const Inputs& in, bool delta_softplus) {
  SsParams p = base_params(in, delta_softplus);
  auto out = torch::empty_like(in.u);
  auto last_state = torch::empty({p.batch, p.dim, p.dstate}, in.u.options());
  p.out = out.data_ptr();
  p.last_state = last_state.data_ptr();
  launch(p, in.kind, in.u.device(), false, p.batch * p.dim);
  return {out, last_state};
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct SelectiveScanFunction : public torch::autograd::Function<SelectiveScanFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& u,
                               const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                               const at::Tensor& C, const std::optional<at::Tensor>& D_opt,
                               const std::optional<at::Tensor>& z_opt,
                               const std::optional<at::Tensor>& delta_bias_opt,
                               bool delta_softplus) {
    c10::DeviceGuard guard(u.device());
    const at::Tensor D = D_opt.value_or(at::Tensor());
    const at::Tensor z = z_opt.value_or(at::Tensor());
    const at::Tensor delta_bias = delta_bias_opt.value_or(at::Tensor());
    const Inputs in = prepare_inputs(u, delta, A, B, C, D, z, delta_bias);
    auto [out, last_state] = scan_forward(in, delta_softplus);
    ctx->save_for_backward({u, delta, A, B, C, D, z, delta_bias});
    ctx->saved_data["delta_softplus"] = delta_softplus;
    ctx->mark_non_differentiable({last_state});
    return {out.to(u.scalar_type()), last_state};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &u = saved[0], &delta = saved[1], &A = saved[2], &B = saved[3],
                     &C = saved[4], &D = saved[5], &z = saved[6], &delta_bias = saved[7];
    c10::DeviceGuard guard(u.device());
    const bool softplus = ctx->saved_data["delta_softplus"].toBool();
    const Inputs in = prepare_inputs(u, delta, A, B, C, D, z, delta_bias);
    SsParams p = base_params(in, softplus);
    p.slices = choose_slices(p.batch, p.dim, in.B.groups_for_slicing, in.C.groups_for_slicing);

    const auto dout = grad_outputs[0].defined() ? grad_outputs[0].to(in.kind).contiguous()
                                                : torch::zeros_like(in.u);
    auto du = torch::zeros_like(in.u);
    auto ddelta = torch::zeros_like(in.u);
    auto dA = torch::zeros({p.batch, p.dim, p.dstate}, in.u.options());
    auto dD = D.defined() ? torch::zeros({p.batch, p.dim}, in.u.options()) : at::Tensor();
    auto dz = z.defined() ? torch::zeros_like(in.u) : at::Tensor();
    auto dbias = delta_bias.defined() ? torch::zeros({p.batch, p.dim}, in.u.options())
                                      : at::Tensor();
    auto dB = make_grad_buffer(in.B.data, p, &p.dB);
    auto dC = make_grad_buffer(in.C.data, p, &p.dC);
    p.dout = dout.data_ptr();
    p.du = du.data_ptr();
    p.ddelta = ddelta.data_ptr();
    p.dA = dA.data_ptr();
    p.dD = dD.defined() ? dD.data_ptr() : nullptr;
    p.dz = dz.defined() ? dz.data_ptr() : nullptr;
    p.ddelta_bias = dbias.defined() ? dbias.data_ptr() : nullptr;
    launch(p, in.kind, in.u.device(), true, p.batch * p.slices);

    auto cast = [](const at::Tensor& grad, const at::Tensor& like) {
      return grad.defined() ? grad.to(like.scalar_type()) : at::Tensor();
    };
    return {cast(du, u),
            cast(ddelta, delta),
            cast(dA.sum(0), A),
            cast(reduce_grad_buffer(dB, B, p), B),
            cast(reduce_grad_buffer(dC, C, p), C),
            D.defined() ? cast(dD.sum(0), D) : at::Tensor(),
            cast(dz, z),
            delta_bias.defined() ? cast(dbias.sum(0), delta_bias) : at::Tensor(),
            at::Tensor()};
  }
};

std::optional<at::Tensor> optional_tensor(const at::Tensor* t) {
  return t ? std::optional<at::Tensor>(*t) : std::nullopt;
}

}  // namespace

extern "C" {

// Runs the selective scan with autograd. Optional inputs may be null. On success writes new
// tensors to *out_y and *out_last_state (caller owns them) and returns 0; on failure returns
// 1 and leaves the message for ss_scan_last_error.
int ss_selective_scan(const at::Tensor* u, const at::Tensor* delta, const at::Tensor* A,
                      const at::Tensor* B, const at::Tensor* C, const at::Tensor* D,
                      const at::Tensor* z, const at::Tensor* delta_bias, int delta_softplus,
                      at::Tensor** out_y, at::Tensor** out_last_state) {
  try {
    auto outputs = SelectiveScanFunction::apply(*u, *delta, *A, *B, *C, optional_tensor(D),
                                                optional_tensor(z), optional_tensor(delta_bias),
                                                delta_softplus != 0);
    *out_y = new at::Tensor(outputs[0]);
    *out_last_state = new at::Tensor(outputs[1]);
    return 0;
  } catch (const c10::Error& e) {
    last_error = e.what_without_backtrace();
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return 1;
}

// Message of the last failed call on this thread; valid until the next call on the thread.
const char* ss_scan_last_error() { return last_error.c_str(); }

// Instruction set the fp32 CPU kernel runs with ("avx512", "avx2" or "scalar").
const char* ss_scan_cpu_isa() { return f32_kernels().isa; }

// Selects the fp32 CPU kernel by instruction set name; returns 0, or 1 when the name is
// unknown or this CPU lacks the instruction set. Affects all threads.
int ss_scan_set_cpu_isa(const char* isa) {
  const std::string name = isa ? isa : "";
  if (!cpu_has(name)) return 1;
  const CpuKernels* kernels = &kScalar;
  if (name == "avx512") {
    kernels = &kAvx512;
  } else if (name == "avx2") {
    kernels = &kAvx2;
  }
  active_f32_kernels.store(kernels);
  return 0;
}

}  // extern "C"

// attention::forward / backward: validate once, then hand over to the CPU kernels of the best
// instruction set (a CUDA backend will be chosen here by where the tensors live).
#include "anchorctx/attention/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "anchorctx/core/cpu_info.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/parallel.h"
#include "attention/cpu/cpu_kernels.h"

namespace anchorctx::attention {
namespace {

void check_dims(const AttentionDims& dims) {
  require(dims.heads_q > 0 && dims.heads_kv > 0,
          "attention: head counts must be positive (heads_q {}, heads_kv {})", dims.heads_q,
          dims.heads_kv);
  require(dims.heads_q % dims.heads_kv == 0,
          "attention: heads_q {} is not a multiple of heads_kv {}", dims.heads_q, dims.heads_kv);
  require(dims.head_dim > 0 && dims.head_dim % 8 == 0 && dims.head_dim <= 256,
          "attention: head_dim {} must be a multiple of 8 in [8, 256]", dims.head_dim);
}

void check_tensor(const void* p, const char* name) {
  require(p != nullptr, "attention: tensor '{}' is null", name);
}

// Fills in the dense default of a tensor's strides (0 = dense) and checks them.
void resolve(Strides& s, int heads, int head_dim, const char* name) {
  require(s.token >= 0 && s.head >= 0, "attention: tensor '{}' has a negative stride ({}, {})",
          name, s.token, s.head);
  if (s.head == 0) s.head = head_dim;
  if (s.token == 0) s.token = static_cast<std::int64_t>(heads) * head_dim;
}

float resolve_scale(const AttentionDims& dims, const KernelOptions& options) {
  require(std::isfinite(options.scale), "attention: softmax scale {} is not finite", options.scale);
  return options.scale != 0.0f ? options.scale
                               : 1.0f / std::sqrt(static_cast<float>(dims.head_dim));
}

// The kernels of the instruction set in use.
struct CpuKernels {
  void (*forward)(const BlockPlan&, const AttentionDims&, const ForwardTensors&,
                  const ForwardStrides&, float, int);
  void (*backward)(const BlockPlan&, const AttentionDims&, const BackwardTensors&,
                   const BackwardStrides&, float, int);
};

// AMX-BF16 on this CPU, and Linux's permission to use its tile data granted to this process
// (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA: without it the first tile
// instruction faults). Asked once.
bool cpu_has_usable_amx_bf16() {
  static const bool usable = [] {
#if defined(__x86_64__) && defined(__linux__)
    if (!core::cpu_info().amx_bf16) return false;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
    return false;
#endif
  }();
  return usable;
}

// The native kernels' products on AMX: where native runs, the CPU has usable AMX-BF16 and
// ANCHORCTX_AMX (read on every call) is not "off".
bool amx_selected() {
  if (!native_bf16_available() || !cpu_has_usable_amx_bf16()) return false;
  const char* env = std::getenv("ANCHORCTX_AMX");
  return env == nullptr || std::string_view(env) != "off";
}

CpuKernels cpu_kernels(core::DType dtype, const KernelOptions& options) {
  if (dtype == core::DType::bf16 && options.native_bf16 && native_bf16_available()) {
    if (amx_selected()) return {cpu::amx_bf16::forward, cpu::amx_bf16::backward};
    return {cpu::avx512_bf16::forward, cpu::avx512_bf16::backward};
  }
  switch (cpu::select_isa()) {
    case cpu::Isa::avx512:
      return {cpu::avx512::forward, cpu::avx512::backward};
    case cpu::Isa::avx2:
      return {cpu::avx2::forward, cpu::avx2::backward};
    case cpu::Isa::portable:
      break;
  }
  return {cpu::portable::forward, cpu::portable::backward};
}

// The threads a call uses: those asked for (0: OpenMP's default), but never more than it has
// tiles to hand out. Each thread holds tile workspaces of up to a few MiB, so 4096 threads on
// an 8-token batch asked for GBs for nothing. Results do not depend on the count.
int call_threads(const BlockPlan& plan, const AttentionDims& dims, int requested) {
  const std::int64_t tiles = std::max(plan.num_q_tiles(), plan.num_kv_tiles());
  const std::int64_t useful = std::max<std::int64_t>(1, tiles * std::max(dims.heads_q, 1));
  return static_cast<int>(std::min<std::int64_t>(core::resolve_threads(requested), useful));
}

}  // namespace

void forward(const BlockPlan& plan, const AttentionDims& dims, const ForwardTensors& t,
             const KernelOptions& options, const ForwardStrides& strides) {
  check_dims(dims);
  ForwardStrides s = strides;
  resolve(s.q, dims.heads_q, dims.head_dim, "q");
  resolve(s.k, dims.heads_kv, dims.head_dim, "k");
  resolve(s.v, dims.heads_kv, dims.head_dim, "v");
  resolve(s.out, dims.heads_q, dims.head_dim, "out");
  check_tensor(t.q, "q");
  check_tensor(t.k, "k");
  check_tensor(t.v, "v");
  check_tensor(t.out, "out");
  check_tensor(t.lse, "lse");
  cpu_kernels(t.dtype, options)
      .forward(plan, dims, t, s, resolve_scale(dims, options),
               call_threads(plan, dims, options.threads));
}

void backward(const BlockPlan& plan, const AttentionDims& dims, const BackwardTensors& t,
              const KernelOptions& options, const BackwardStrides& strides) {
  check_dims(dims);
  BackwardStrides s = strides;
  resolve(s.q, dims.heads_q, dims.head_dim, "q");
  resolve(s.k, dims.heads_kv, dims.head_dim, "k");
  resolve(s.v, dims.heads_kv, dims.head_dim, "v");
  resolve(s.out, dims.heads_q, dims.head_dim, "out");
  resolve(s.dout, dims.heads_q, dims.head_dim, "dout");
  resolve(s.dq, dims.heads_q, dims.head_dim, "dq");
  resolve(s.dk, dims.heads_kv, dims.head_dim, "dk");
  resolve(s.dv, dims.heads_kv, dims.head_dim, "dv");
  check_tensor(t.q, "q");
  check_tensor(t.k, "k");
  check_tensor(t.v, "v");
  check_tensor(t.out, "out");
  check_tensor(t.dout, "dout");
  check_tensor(t.lse, "lse");
  check_tensor(t.dq, "dq");
  check_tensor(t.dk, "dk");
  check_tensor(t.dv, "dv");
  cpu_kernels(t.dtype, options)
      .backward(plan, dims, t, s, resolve_scale(dims, options),
                call_threads(plan, dims, options.threads));
}

BackwardSchedule backward_schedule(const BlockPlan& plan, const AttentionDims& dims, int threads) {
  const std::int64_t items =
      static_cast<std::int64_t>(plan.layout().num_sequences()) * std::max(dims.heads_kv, 1);
  const std::int64_t workers = core::resolve_threads(threads);
  const std::int64_t rounds = (items + workers - 1) / workers;
  // Key tiles in turn keep every thread busy but wait for their turns and move dQ rows between
  // cores: 10% slower than fused where both fill 2 threads (docs/PERFORMANCE.md).
  return items * 100 >= rounds * workers * 85 ? BackwardSchedule::fused
                                              : BackwardSchedule::key_tiles_in_turn;
}

std::string kernel_isa() {
  return cpu::isa_name(cpu::select_isa());
}

bool native_bf16_available(std::string* why_not) {
  const auto no = [&](const char* why) {
    if (why_not != nullptr) *why_not = why;
    return false;
  };
  if (!core::cpu_info().avx512_bf16) return no("the CPU lacks AVX512_BF16");
  if (cpu::select_isa() != cpu::Isa::avx512) return no("ANCHORCTX_ISA selects below avx512");
  return true;
}

std::string kernel_isa(core::DType dtype, const KernelOptions& options) {
  if (dtype == core::DType::bf16 && options.native_bf16 && native_bf16_available())
    return amx_selected() ? "amx_bf16" : "avx512_bf16";
  return kernel_isa();
}

}  // namespace anchorctx::attention

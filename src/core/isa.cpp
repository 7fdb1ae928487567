#include "anchorctx/core/isa.h"

#include <cstdlib>
#include <string_view>

namespace anchorctx::core {

Isa best_cpu_isa() {
  static const Isa best = [] {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
      return Isa::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
    return Isa::portable;
  }();
  return best;
}

Isa selected_isa() {
  const Isa best = best_cpu_isa();
  const char* requested = std::getenv("ANCHORCTX_ISA");
  if (requested == nullptr) return best;
  const std::string_view name(requested);
  Isa wanted = best;
  if (name == "portable") wanted = Isa::portable;
  if (name == "avx2") wanted = Isa::avx2;
  if (name == "avx512") wanted = Isa::avx512;
  return wanted < best ? wanted : best;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    case Isa::portable:
      return "portable";
  }
  return "?";
}

}  // namespace anchorctx::core

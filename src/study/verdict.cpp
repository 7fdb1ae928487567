// The pre-registered verdict rule (verdict.h). Changing it after results exist would defeat it:
// docs/STUDY.md states the same rule and the tests pin it.
#include "anchorctx/study/verdict.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace anchorctx::study {

std::string_view to_string(Verdict verdict) {
  switch (verdict) {
    case Verdict::reproduced:
      return "reproduced";
    case Verdict::not_reproduced:
      return "not reproduced";
    case Verdict::inconclusive:
      break;
  }
  return "inconclusive";
}

const std::vector<Claim>& paper_claims() {
  static const std::vector<Claim> claims = {
      {"C1", "AnchorAttention beats full attention", "score", {{"anchor", 1}, {"full", -1}}},
      {"C2",
       "AnchorAttention beats intra-document attention with continuous ids",
       "score",
       {{"anchor", 1}, {"intra_cont", -1}}},
      {"C3",
       "AnchorAttention beats intra-document attention with reset ids",
       "score",
       {{"anchor", 1}, {"intra_reset", -1}}},
      {"C4",
       "Intra-document attention with reset ids beats continuous ids (bf16 makes RoPE partly "
       "absolute)",
       "score",
       {{"intra_reset", 1}, {"intra_cont", -1}}},
      {"C5",
       "Intra-document attention (continuous ids) beats full attention",
       "score",
       {{"intra_cont", 1}, {"full", -1}}},
      {"C6",
       "bf16 costs full attention more than AnchorAttention: (full_fp32 - full) - (anchor_fp32 - "
       "anchor) > 0",
       "score",
       {{"full_fp32", 1}, {"full", -1}, {"anchor_fp32", -1}, {"anchor", 1}}},
      {"C7",
       "AnchorAttention trains faster than full attention at the long window (paper: over 50% "
       "less time)",
       "step_s",
       {{"full", 1}, {"anchor", -1}}},
  };
  return claims;
}

namespace {

double mean(const std::vector<double>& v) {
  double s = 0.0;
  for (const double x : v)
    s += x;
  return s / static_cast<double>(v.size());
}

}  // namespace

Judgement judge(const Claim& claim, const SeedValues& values, double min_effect) {
  Judgement j;
  const double nan = std::nan("");
  const auto unknown = [&](std::string reason) {
    j.effect = j.spread = j.threshold = nan;
    j.effect_known = j.spread_known = false;
    j.reason = std::move(reason);
    return j;
  };
  bool have_spread = false;
  double scale = 0.0;  // the largest per-seed value in magnitude: the tie tolerance's unit
  for (const Term& t : claim.terms) {
    const auto it = values.find(t.variant);
    if (it == values.end() || it->second.empty())
      return unknown(fmt::format("variant {} was not run", t.variant));
    for (const double x : it->second) {
      if (!std::isfinite(x))
        return unknown(fmt::format("variant {} has a non-finite value", t.variant));
      scale = std::max(scale, std::fabs(x));
    }
    j.effect += t.coef * mean(it->second);
    if (it->second.size() >= 2) {
      const auto [lo, hi] = std::minmax_element(it->second.begin(), it->second.end());
      j.spread = std::max(j.spread, *hi - *lo);
      have_spread = true;
    }
  }
  j.effect_known = true;
  if (!have_spread) {
    j.spread = j.threshold = nan;
    j.reason = fmt::format("effect {:+.3g}, but no variant has two seeds: no spread to judge by",
                           j.effect);
    return j;
  }
  j.spread_known = true;
  j.threshold = std::max(j.spread, min_effect);
  // Beyond the threshold by more than rounding (verdict.h): a tie stays a tie.
  const double margin = j.threshold + kTieTolerance * scale;
  if (j.effect > margin) {
    j.verdict = Verdict::reproduced;
    j.reason = fmt::format("effect {:+.3g} exceeds the threshold {:.3g} (seed spread {:.3g})",
                           j.effect, j.threshold, j.spread);
  } else if (j.effect < -margin) {
    j.verdict = Verdict::not_reproduced;
    j.reason = fmt::format(
        "effect {:+.3g}: the opposite holds beyond the threshold {:.3g} (seed spread {:.3g})",
        j.effect, j.threshold, j.spread);
  } else {
    j.reason = fmt::format("effect {:+.3g} is within the threshold {:.3g} (seed spread {:.3g})",
                           j.effect, j.threshold, j.spread);
  }
  return j;
}

}  // namespace anchorctx::study

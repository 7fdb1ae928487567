// The pre-registered verdict rule of the study (docs/STUDY.md, written before any result
// existed). Each claim of the paper is a contrast of variant means that the paper says is
// positive, e.g. anchor - full > 0 on the retrieval score.
//
// The rule, for a claim with per-seed values of each variant it involves:
//   effect    = sum over terms of coef x mean(values of the term's variant)
//   spread    = the largest seed range (max - min) among those variants with 2 or more seeds
//   threshold = max(spread, min_effect)
//   reproduced      effect >  threshold
//   not reproduced  effect < -threshold (the opposite of the claim, beyond the seed spread)
//   inconclusive    otherwise: a difference within the seed spread, a variant not run or with a
//                   non-finite value, or no variant with 2 seeds (no spread to judge against).
// A tie is decided as exact arithmetic would: effect and threshold that differ by no more than
// kTieTolerance times the largest per-seed value of the claim's variants (in magnitude) are
// equal. Means over tasks and lengths round (a mean with a /3 in it), so an exact tie between
// quantised scores could come out 2e-15 either side and flip the verdict.
// A difference counts only if it exceeds the spread between seeds of the same setting: the
// spread is what chance alone does at this scale.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace anchorctx::study {

enum class Verdict { reproduced, not_reproduced, inconclusive };
std::string_view to_string(Verdict verdict);  // "reproduced", "not reproduced", "inconclusive"

struct Term {
  std::string variant;
  double coef = 1.0;
};

struct Claim {
  std::string id;         // C1, C2, ...
  std::string statement;  // what the paper says, in words
  std::string metric;     // "score" (retrieval, 0-100, higher better) or "step_s" (lower better)
  std::vector<Term> terms;
};

// The paper's claims this study tests, in the order the report lists them.
const std::vector<Claim>& paper_claims();

// Far above the rounding of a mean of millions of values (about 1e-16 each, relative), far below
// any real difference of quantised scores (one prompt of a study's 3 tasks x 16 prompts x 4
// lengths moves a primary score by 0.52 of 100) or of step times.
inline constexpr double kTieTolerance = 1e-9;

struct Judgement {
  Verdict verdict = Verdict::inconclusive;
  // NaN, and *_known false, where the claim could not be computed: effect when a variant is
  // missing or has a non-finite value; spread and threshold also when no variant has two seeds.
  double effect = 0.0, spread = 0.0, threshold = 0.0;
  bool effect_known = false, spread_known = false;
  std::string reason;  // one sentence of evidence
};

// Per-seed values by variant name (only the claim's variants are read).
using SeedValues = std::map<std::string, std::vector<double>>;

Judgement judge(const Claim& claim, const SeedValues& values, double min_effect);

}  // namespace anchorctx::study

// run_evaluation's samples: which seed each task's sample i is built from, so that the same
// command gives the same prompts and runs with other seeds give other ones.
#include "anchorctx/eval/evaluation.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "anchorctx/core/random.h"
#include "anchorctx/data/tokenizer.h"
#include "anchorctx/eval/engine.h"
#include "anchorctx/eval/ruler.h"
#include "anchorctx/eval/synthetic_tasks.h"
#include "eval/eval_test_models.h"

namespace anchorctx::eval {
namespace {

EvalReport evaluate_seed(Engine& engine, const data::Tokenizer& tok, const std::string& haystack,
                         std::uint64_t seed) {
  EvalOptions options;
  options.tasks = {"niah_single_1", "vt", "cwe", "fwe"};
  options.lengths = {2048};
  options.samples = 3;
  options.seed = seed;
  options.templates = default_templates().at("ruler");
  options.template_set_name = "ruler";
  options.haystack_text = haystack;
  return run_evaluation(engine, tok, options);
}

// Sample i of a niah cell is built from --seed + i (the depth, mixed into its stream, differs
// from sample to sample); of a vt, cwe or fwe cell from synthetic_sample_seed(seed, i). Those
// used seed + i too, with no depth to tell them apart: --seed 6 re-used --seed 5's samples.
TEST(Evaluation, NeighbouringSeedsShareNoSample) {
  const auto tok = data::make_byte_tokenizer();
  model::LlamaConfig c = eval_test::tiny_config(tok->vocab_size());
  c.max_position_embeddings = 2048;
  const model::ParameterLayout layout = model::ParameterLayout::for_config(c);
  std::vector<float> params(layout.total());
  model::init_parameters(layout, c, 5, params);
  Engine engine(eval_test::model_from_params(c, layout, params));
  const std::string haystack = builtin_prose(100);
  const EvalReport a = evaluate_seed(engine, *tok, haystack, 5);
  const EvalReport b = evaluate_seed(engine, *tok, haystack, 6);
  ASSERT_EQ(a.niah.size(), 4u);
  ASSERT_EQ(b.niah.size(), 4u);

  const TemplateSet templates = default_templates().at("ruler");
  const NiahGenerator niah(*tok, haystack, templates);
  const SyntheticGenerator synthetic(*tok, haystack, templates);
  for (const EvalReport* r : {&a, &b})
    for (const NiahCell& cell : r->niah) {
      SCOPED_TRACE(cell.task + " seed " + std::to_string(r->seed));
      ASSERT_EQ(cell.samples.size(), 3u);
      for (std::size_t i = 0; i < 3; ++i) {
        const TaskSample s =
            is_synthetic_task(cell.task)
                ? synthetic.make(cell.task, 2048,
                                 synthetic_sample_seed(r->seed, static_cast<std::int64_t>(i)))
                : niah.make(*find_niah_task(cell.task), 2048, 0.5 * static_cast<double>(i),
                            r->seed + i);
        EXPECT_EQ(cell.samples[i].answers, s.answers) << i;
        EXPECT_EQ(cell.samples[i].prompt_tokens, static_cast<std::int64_t>(s.prompt_ids.size()))
            << i;
      }
    }
  for (std::size_t t = 0; t < a.niah.size(); ++t) {
    SCOPED_TRACE(a.niah[t].task);
    for (const NiahRecord& x : a.niah[t].samples)
      for (const NiahRecord& y : b.niah[t].samples)
        EXPECT_NE(x.answers, y.answers);
  }
  // The stream of sample i: number i + 1 of splitmix64 from the seed.
  std::uint64_t state = 5;
  for (std::int64_t i = 0; i < 4; ++i)
    EXPECT_EQ(synthetic_sample_seed(5, i), core::splitmix64(state));
}

}  // namespace
}  // namespace anchorctx::eval

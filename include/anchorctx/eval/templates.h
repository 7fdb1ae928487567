// Prompt templates of the synthetic tasks, as data: a JSON file the user can replace
// (`anchorctx eval --templates FILE`; `--print-templates` shows the defaults).
//
// Two template sets are built in: `ruler`, RULER's wording for the niah tasks, and `kv`, the
// built-in corpus's own key-value lines ("key 4821 is apple." ... "what is key 4821? apple"), so a
// model trained by `anchorctx demo` is asked in the format it learned. Fields of a set:
//   task           the prompt around the haystack: needs {context} and {query}; may use
//                  {type_needle_v} (numbers, uuids, words: the value type)
//   needle         one needle: needs {key} and {value}; may use {type_needle_v}
//   answer_prefix  appended after the task text (the start of the answer); may use {query} and
//                  {type_needle_v}
//   noise          the noise haystack's text (repeated), for niah_single_1
//   query_join     how several queried keys are listed (multiquery): ", " ... ", and " -> RULER's
//   keys           "words" (adjective-noun pairs, RULER), "numbers4" (4-digit, the corpus's keys)
//   values         "default" (each task's RULER type) or "corpus_words" (the corpus's value words)
//   tokens_to_generate  per task family niah; the prompt is sized to leave room for them
//   vt, cwe, fwe   optional objects, the templates of those tasks (a set without one cannot run
//                  that task): "task" (needs {context}; vt also {query}), "answer_prefix" (may
//                  use {query} and, for vt, {num_v}: the number of variables asked),
//                  "tokens_to_generate"; vt also takes "noise" (the text one noise unit is)
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

namespace anchorctx::eval {

// The template of one of the non-needle tasks (vt, cwe, fwe).
struct TaskTemplate {
  std::string task, answer_prefix, noise;
  std::int64_t tokens_to_generate = 128;
};

struct TemplateSet {
  std::string task, needle, answer_prefix, noise;
  std::string keys = "words", values = "default";
  std::int64_t tokens_to_generate = 128;
  std::map<std::string, TaskTemplate> tasks;  // "vt", "cwe", "fwe" where the set has them
  // Throws anchorctx::Error naming the task when the set has no template for it.
  const TaskTemplate& task_template(const std::string& name) const;
};

struct Templates {
  std::map<std::string, TemplateSet> sets;
  // Throws anchorctx::Error naming the set when absent.
  const TemplateSet& at(const std::string& name) const;
};

// The built-in templates as JSON text (what --print-templates prints).
std::string default_templates_json();
Templates default_templates();
// Parses and checks a template file: every set has its required placeholders, keys/values are
// known words. Throws anchorctx::Error naming the file, set and field.
Templates parse_templates(const std::string& json_text, const std::string& source);
Templates load_templates(const std::filesystem::path& path);

// `text` with every {name} replaced by vars' value (unknown names left as they are).
std::string fill(std::string text, const std::map<std::string, std::string>& vars);

}  // namespace anchorctx::eval

#include "anchorctx/eval/templates.h"

#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "anchorctx/core/json_file.h"

namespace anchorctx::eval {
namespace {

// RULER's wording (its synthetic task constants: niah, variable_tracking, common_words_extraction,
// freq_words_extraction; "assgined" is RULER's own spelling, kept so prompts match its), and the
// corpus's key-value lines.
constexpr const char* kDefaultTemplates = R"json({
  "ruler": {
    "task": "Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. I will quiz you about the {type_needle_v} afterwards.\n{context}\nWhat are all the special magic {type_needle_v} for {query} mentioned in the provided text?",
    "answer_prefix": " The special magic {type_needle_v} for {query} mentioned in the provided text are",
    "needle": "One of the special magic {type_needle_v} for {key} is: {value}. ",
    "noise": "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ",
    "keys": "words",
    "values": "default",
    "tokens_to_generate": 128,
    "vt": {
      "task": "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\nQuestion: Find all variables that are assigned the value {query} in the text above.",
      "answer_prefix": " Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are assgined the value {query}, they are: ",
      "noise": "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n",
      "tokens_to_generate": 30
    },
    "cwe": {
      "task": "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?",
      "answer_prefix": " Answer: The top 10 words that appear most often in the list are:",
      "tokens_to_generate": 120
    },
    "fwe": {
      "task": "Read the following coded text and track the frequency of each coded word. Find the three most frequently appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are the three most frequently appeared words in the above coded text?",
      "answer_prefix": " Answer: According to the coded text above, the three most frequently appeared words are:",
      "tokens_to_generate": 50
    }
  },
  "kv": {
    "task": "{context}\nwhat is key {query}?",
    "answer_prefix": "",
    "needle": "\nkey {key} is {value}.\n",
    "noise": "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ",
    "keys": "numbers4",
    "values": "corpus_words",
    "tokens_to_generate": 12
  }
}
)json";

void require_placeholder(const std::string& source, const std::string& set,
                         const std::string& field, const std::string& text,
                         const std::string& name) {
  if (text.find("{" + name + "}") == std::string::npos)
    fail("{}: template set '{}': field '{}' lacks the placeholder {{{}}}", source, set, field,
         name);
}

// One of the vt/cwe/fwe objects of a set.
TaskTemplate parse_task_template(const std::string& source, const std::string& set,
                                 const std::string& task, const nlohmann::json& v) {
  const std::string where = set + "." + task;
  if (!v.is_object()) fail("{}: template '{}' is not an object", source, where);
  const auto str = [&](const char* field, bool required) -> std::string {
    if (!v.contains(field)) {
      if (required) fail("{}: template '{}' lacks the field '{}'", source, where, field);
      return {};
    }
    if (!v[field].is_string())
      fail("{}: template '{}': field '{}' is not a string", source, where, field);
    return v[field].get<std::string>();
  };
  TaskTemplate t;
  t.task = str("task", true);
  t.answer_prefix = str("answer_prefix", false);
  t.noise = str("noise", task == "vt");
  if (v.contains("tokens_to_generate")) {
    if (!v["tokens_to_generate"].is_number_integer() || v["tokens_to_generate"].get<int>() < 1)
      fail("{}: template '{}': tokens_to_generate must be a positive integer", source, where);
    t.tokens_to_generate = v["tokens_to_generate"].get<std::int64_t>();
  }
  require_placeholder(source, where, "task", t.task, "context");
  if (task == "vt") {
    require_placeholder(source, where, "task", t.task, "query");
    if (t.noise.find_first_not_of(" \n\t") == std::string::npos)
      fail("{}: template '{}': noise is empty", source, where);
  }
  return t;
}

}  // namespace

const TaskTemplate& TemplateSet::task_template(const std::string& name) const {
  const auto it = tasks.find(name);
  if (it == tasks.end())
    fail(
        "the template set has no '{}' template (add a \"{}\" object to it; --print-templates "
        "shows the ruler set's)",
        name, name);
  return it->second;
}

const TemplateSet& Templates::at(const std::string& name) const {
  const auto it = sets.find(name);
  if (it == sets.end()) {
    std::string known;
    for (const auto& [k, v] : sets)
      known += (known.empty() ? "" : ", ") + k;
    fail("no template set '{}' (the templates hold: {})", name, known);
  }
  return it->second;
}

std::string default_templates_json() {
  return kDefaultTemplates;
}

Templates default_templates() {
  return parse_templates(kDefaultTemplates, "built-in templates");
}

Templates parse_templates(const std::string& json_text, const std::string& source) {
  const nlohmann::json j = core::parse_json(json_text, source);
  if (!j.is_object() || j.empty()) fail("{}: expected an object of template sets", source);
  Templates out;
  for (const auto& item : j.items()) {
    // Named, not structured bindings: the lambda below captures them (clang 14 refuses
    // capturing structured bindings).
    const std::string& name = item.key();
    const nlohmann::json& v = item.value();
    if (!v.is_object()) fail("{}: template set '{}' is not an object", source, name);
    const auto str = [&](const char* field, bool required) -> std::string {
      if (!v.contains(field)) {
        if (required) fail("{}: template set '{}' lacks the field '{}'", source, name, field);
        return {};
      }
      if (!v[field].is_string())
        fail("{}: template set '{}': field '{}' is not a string", source, name, field);
      return v[field].get<std::string>();
    };
    TemplateSet s;
    s.task = str("task", true);
    s.needle = str("needle", true);
    s.answer_prefix = str("answer_prefix", false);
    s.noise = str("noise", true);
    if (v.contains("keys")) s.keys = str("keys", true);
    if (v.contains("values")) s.values = str("values", true);
    if (v.contains("tokens_to_generate")) {
      if (!v["tokens_to_generate"].is_number_integer() || v["tokens_to_generate"].get<int>() < 1)
        fail("{}: template set '{}': tokens_to_generate must be a positive integer", source, name);
      s.tokens_to_generate = v["tokens_to_generate"].get<std::int64_t>();
    }
    require_placeholder(source, name, "task", s.task, "context");
    require_placeholder(source, name, "task", s.task, "query");
    require_placeholder(source, name, "needle", s.needle, "key");
    require_placeholder(source, name, "needle", s.needle, "value");
    if (s.keys != "words" && s.keys != "numbers4")
      fail("{}: template set '{}': keys '{}' is not one of words, numbers4", source, name, s.keys);
    if (s.values != "default" && s.values != "corpus_words")
      fail("{}: template set '{}': values '{}' is not one of default, corpus_words", source, name,
           s.values);
    if (s.noise.find_first_not_of(" \n\t") == std::string::npos)
      fail("{}: template set '{}': noise is empty", source, name);
    for (const char* task : {"vt", "cwe", "fwe"})
      if (v.contains(task)) s.tasks[task] = parse_task_template(source, name, task, v[task]);
    out.sets[name] = std::move(s);
  }
  return out;
}

Templates load_templates(const std::filesystem::path& path) {
  // Through read_regular_file: a FIFO given as --templates blocked for good.
  return parse_templates(core::read_regular_file(path, "the template file"), path.string());
}

std::string fill(std::string text, const std::map<std::string, std::string>& vars) {
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '{') {
      const std::size_t close = text.find('}', i);
      if (close != std::string::npos) {
        const auto it = vars.find(text.substr(i + 1, close - i - 1));
        if (it != vars.end()) {
          out += it->second;
          i = close + 1;
          continue;
        }
      }
    }
    out += text[i++];
  }
  return out;
}

}  // namespace anchorctx::eval

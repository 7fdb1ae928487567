// Checkpoints: a bit-exact round trip of weights, moments and trainer state; listing that sees
// only complete step-* folders; pruning; clear errors naming the file for every damaged or
// missing part; a writer SIGKILLed at random moments never leaves a checkpoint that does not
// load; and (when torch and transformers are importable) transformers loads the folder as is.
#include "anchorctx/train/checkpoint.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "anchorctx/model/config.h"
#include "anchorctx/model/llama_inference.h"
#include "anchorctx/model/llama_weights.h"
#include "anchorctx/model/parameters.h"
#include "anchorctx/model/safetensors.h"
#include "support/error_of.h"
#include "support/temp_dir.h"

namespace anchorctx::train {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using model::LlamaConfig;
using model::ParameterLayout;
using test::TempDir;

using test::error_of;

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// A model, its moments and a state: everything a checkpoint holds.
struct Fixture {
  LlamaConfig config;
  ParameterLayout layout;
  std::vector<float> params, exp_avg, exp_avg_sq;
  TrainerState state;

  explicit Fixture(LlamaConfig c, std::uint64_t seed = 1)
      : config(std::move(c)), layout(ParameterLayout::for_config(config)) {
    params.resize(layout.total());
    model::init_parameters(layout, config, seed, params);
    exp_avg.assign(layout.total(), 0.0f);
    exp_avg_sq.assign(layout.total(), 0.0f);
    std::mt19937 gen(static_cast<std::uint32_t>(seed));
    std::normal_distribution<float> normal(0.0f, 1e-3f);
    for (const model::ParameterInfo& p : layout.params()) {
      for (std::size_t i = p.offset; i < p.offset + p.size; ++i) {
        exp_avg[i] = normal(gen);
        exp_avg_sq[i] = exp_avg[i] * exp_avg[i] * 0.5f;
      }
      // Awkward bits: a denormal, -0.0, the largest float.
      exp_avg[p.offset] = std::numeric_limits<float>::denorm_min();
      if (p.size > 2) exp_avg[p.offset + 1] = -0.0f;
      if (p.size > 3) exp_avg_sq[p.offset + 2] = std::numeric_limits<float>::max();
    }
    state.step = 123;
    state.tokens_seen = 4'567'890'123;
    state.data_cursor = 98765;
    state.rng_state = 0xdeadbeefcafef00dull;
    state.last_loss = 2.302585092994046;
    state.options = {{"lr", 3e-4}, {"seq_len", 4096}, {"anchor", "shared"}};
  }

  CheckpointData data(bool with_optimizer = true) const {
    CheckpointData d;
    d.config = &config;
    d.layout = &layout;
    d.params = params;
    if (with_optimizer) {
      d.optimizer_steps = state.step;
      d.exp_avg = exp_avg;
      d.exp_avg_sq = exp_avg_sq;
    }
    d.state = state;
    return d;
  }
};

LlamaConfig small_qwen2() {
  LlamaConfig c = model::preset("tiny");
  c.model_type = model::ModelType::qwen2;
  c.tie_word_embeddings = true;
  c.attention_bias = true;  // what parse_config sets for qwen2 (the field means nothing there)
  c.num_hidden_layers = 2;
  c.torch_dtype = "bfloat16";  // the checkpoint writes float32 and says so
  return c;
}

void expect_same_state(const TrainerState& got, const TrainerState& want) {
  EXPECT_EQ(got.step, want.step);
  EXPECT_EQ(got.tokens_seen, want.tokens_seen);
  EXPECT_EQ(got.data_cursor, want.data_cursor);
  EXPECT_EQ(got.rng_state, want.rng_state);
  EXPECT_EQ(std::bit_cast<std::uint64_t>(got.last_loss),
            std::bit_cast<std::uint64_t>(want.last_loss));
  EXPECT_EQ(got.options, want.options);
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> hidden_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const std::string& n : names_in(dir))
    if (n.starts_with(".")) out.push_back(n);
  return out;
}

TEST(Checkpoint, PathAndLayout) {
  EXPECT_EQ(checkpoint_path("run", 42), fs::path("run/checkpoints/step-000042"));
  EXPECT_EQ(checkpoint_path("run", 12345678), fs::path("run/checkpoints/step-12345678"));
  EXPECT_NE(error_of([] { checkpoint_path("run", -1); }), "");
}

TEST(Checkpoint, RoundTripIsBitExact) {
  const TempDir run;
  Fixture f(small_qwen2());
  const std::string tokenizer = run.write("tokenizer.model", "not really a tokenizer");
  const std::vector<double> losses = {
      2.302585092994046,
      0.1 + 0.2,
      std::numeric_limits<double>::denorm_min(),
      -0.0,
      std::numeric_limits<double>::infinity(),
      std::bit_cast<double>(0x7ff8'0000'dead'beefull),  // a NaN with a payload
  };
  const std::vector<std::pair<std::uint64_t, std::uint64_t>> counters = {
      {0, 0},
      // The largest cursor a state may hold (kMaxTrainerCount); a generator state of any
      // 64 bits, beyond a double's exact integers.
      {std::uint64_t{kMaxTrainerCount}, std::numeric_limits<std::uint64_t>::max()},
      {(1ull << 52) + 1, (1ull << 63) + 1},
  };
  for (std::size_t i = 0; i < losses.size(); ++i) {
    f.state.step = static_cast<std::int64_t>(i);
    f.state.last_loss = losses[i];
    f.state.data_cursor = counters[i % counters.size()].first;
    f.state.rng_state = counters[i % counters.size()].second;
    f.state.tokens_seen = i == 1 ? kMaxTrainerCount : 1000;
    CheckpointData d = f.data();
    d.extra_files = {tokenizer};
    const fs::path dir = save_checkpoint(run.path(), d);
    EXPECT_EQ(dir, checkpoint_path(run.path(), static_cast<std::int64_t>(i)));
    EXPECT_EQ(names_in(dir),
              (std::vector<std::string>{"config.json", "model.safetensors", "optimizer.safetensors",
                                        "tokenizer.model", "trainer_state.json"}));
    EXPECT_EQ(test::read_file((dir / "tokenizer.model").string()), "not really a tokenizer");

    const LoadedCheckpoint got = load_checkpoint(dir);
    LlamaConfig want_config = f.config;
    want_config.torch_dtype = "float32";
    EXPECT_EQ(got.config, want_config);
    expect_same_state(got.state, f.state);
    EXPECT_EQ(got.optimizer_steps, f.state.step);
    EXPECT_TRUE(same_bits(got.params, f.params));
    EXPECT_TRUE(same_bits(got.exp_avg, f.exp_avg));
    EXPECT_TRUE(same_bits(got.exp_avg_sq, f.exp_avg_sq));
  }
  EXPECT_TRUE(hidden_in(run.path() / "checkpoints").empty());

  // The JSON is readable by anyone: 64-bit counters as exact integers.
  const json j = json::parse(
      test::read_file((checkpoint_path(run.path(), 1) / "trainer_state.json").string()));
  EXPECT_EQ(j.at("version"), kTrainerStateVersion);
  EXPECT_EQ(j.at("data_cursor").get<std::uint64_t>(), std::uint64_t{kMaxTrainerCount});
  EXPECT_EQ(j.at("rng_state").get<std::uint64_t>(), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(j.at("last_loss_bits"), "0x3fd3333333333334");
  EXPECT_EQ(j.at("last_loss").get<double>(), 0.1 + 0.2);
}

TEST(Checkpoint, WithoutOptimizerState) {
  const TempDir run;
  Fixture f(model::preset("tiny"));
  const fs::path dir = save_checkpoint(run.path(), f.data(/*with_optimizer=*/false));
  EXPECT_FALSE(fs::exists(dir / "optimizer.safetensors"));
  const LoadedCheckpoint got = load_checkpoint(dir);
  EXPECT_TRUE(same_bits(got.params, f.params));
  EXPECT_TRUE(got.exp_avg.empty());
  EXPECT_TRUE(got.exp_avg_sq.empty());
  EXPECT_EQ(got.optimizer_steps, 0);
  expect_same_state(got.state, f.state);
}

TEST(Checkpoint, ReplacesTheSameStep) {
  const TempDir run;
  Fixture a(model::preset("tiny"), 1), b(model::preset("tiny"), 2);
  save_checkpoint(run.path(), a.data());
  const fs::path dir = save_checkpoint(run.path(), b.data(false));
  EXPECT_TRUE(same_bits(load_checkpoint(dir).params, b.params));
  EXPECT_FALSE(fs::exists(dir / "optimizer.safetensors"));  // nothing of the old folder left
  EXPECT_TRUE(hidden_in(run.path() / "checkpoints").empty());
  EXPECT_EQ(list_checkpoints(run.path()).size(), 1u);
}

TEST(Checkpoint, ListIgnoresHiddenAndIncompleteFolders) {
  const TempDir run;
  EXPECT_TRUE(list_checkpoints(run.path()).empty());  // no checkpoints folder yet
  EXPECT_FALSE(latest_checkpoint(run.path()).has_value());
  Fixture f(model::preset("tiny"));
  for (const std::int64_t step : {200, 5, 1'000'000, 10}) {
    f.state.step = step;
    save_checkpoint(run.path(), f.data(false));
  }
  const fs::path root = run.path() / "checkpoints";
  // A writer killed before its rename: complete-looking, but hidden.
  fs::copy(checkpoint_path(run.path(), 200), root / ".step-003000.tmp-999999-0",
           fs::copy_options::recursive);
  // A step folder without trainer_state.json (not written by us, or damaged).
  fs::copy(checkpoint_path(run.path(), 200), root / "step-004000", fs::copy_options::recursive);
  fs::remove(root / "step-004000" / "trainer_state.json");
  fs::create_directories(root / "step-12ab");
  fs::create_directories(root / "step-");
  run.write("checkpoints/step-005000", "a file, not a folder");
  run.write("checkpoints/notes.txt", "");

  const std::vector<fs::path> all = list_checkpoints(run.path());
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0], checkpoint_path(run.path(), 5));
  EXPECT_EQ(all[1], checkpoint_path(run.path(), 10));
  EXPECT_EQ(all[2], checkpoint_path(run.path(), 200));
  EXPECT_EQ(all[3], checkpoint_path(run.path(), 1'000'000));  // numeric, not lexicographic
  EXPECT_EQ(latest_checkpoint(run.path()), checkpoint_path(run.path(), 1'000'000));
}

TEST(Checkpoint, PruneKeepsTheNewest) {
  const TempDir run;
  Fixture f(model::preset("tiny"));
  for (std::int64_t step = 1; step <= 5; ++step) {
    f.state.step = step * 10;
    save_checkpoint(run.path(), f.data(false));
  }
  prune_checkpoints(run.path(), 0);  // keeps all
  EXPECT_EQ(list_checkpoints(run.path()).size(), 5u);

  const fs::path root = run.path() / "checkpoints";
  // Leftovers of a killed writer (a reaped child: its pid is no longer a process) and one of a
  // live writer (this process).
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  ::waitpid(child, nullptr, 0);
  const std::string dead = fmt::format(".step-000060.tmp-{}-0", child);
  const std::string live = fmt::format(".step-000070.tmp-{}-0", ::getpid());
  fs::create_directories(root / dead / "sub");
  fs::create_directories(root / live);

  prune_checkpoints(run.path(), 2);
  EXPECT_EQ(list_checkpoints(run.path()), (std::vector<fs::path>{checkpoint_path(run.path(), 40),
                                                                 checkpoint_path(run.path(), 50)}));
  EXPECT_EQ(hidden_in(root), std::vector<std::string>{live});
  prune_checkpoints(run.path(), 10);
  EXPECT_EQ(list_checkpoints(run.path()).size(), 2u);
  prune_checkpoints(run.path() / "nothing-here", 1);  // no run folder: nothing to do
}

// Every damaged or missing part: an error naming the file (and the key or tensor).
TEST(Checkpoint, DamagedCheckpointsGiveClearErrors) {
  const TempDir run;
  Fixture f(small_qwen2());
  const fs::path good = save_checkpoint(run.path(), f.data());
  int n = 0;
  // Copies the good folder, damages it, and checks the error of loading it.
  const auto check = [&](const std::string& what, const auto& damage,
                         const std::vector<std::string>& fragments) {
    const fs::path dir = run.path() / fmt::format("damaged-{}", n++);
    fs::copy(good, dir, fs::copy_options::recursive);
    damage(dir);
    const std::string e = error_of([&] { load_checkpoint(dir); });
    EXPECT_NE(e, "") << what;
    for (const std::string& frag : fragments) {
      const std::string want = frag.starts_with("/") ? (dir.string() + frag) : frag;
      EXPECT_NE(e.find(want), std::string::npos)
          << what << ": '" << e << "' lacks '" << want << "'";
    }
  };
  const auto write = [](const fs::path& p, const std::string& text) {
    std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
  };
  const auto edit_state = [&](const std::function<void(json&)>& edit) {
    return [=](const fs::path& dir) {
      json j = json::parse(test::read_file((dir / "trainer_state.json").string()));
      edit(j);
      write(dir / "trainer_state.json", j.dump());
    };
  };
  const auto truncate = [](const fs::path& p, std::uintmax_t keep) { fs::resize_file(p, keep); };

  check("no folder", [](const fs::path& dir) { fs::remove_all(dir); }, {"not a checkpoint"});
  check("no trainer_state", [](const fs::path& dir) { fs::remove(dir / "trainer_state.json"); },
        {"/trainer_state.json", "cannot open"});
  check("bad json", [&](const fs::path& dir) { write(dir / "trainer_state.json", "{\"ver"); },
        {"/trainer_state.json", "not valid JSON"});
  check("version", edit_state([](json& j) { j["version"] = 99; }),
        {"/trainer_state.json", "version 99"});
  check("missing key", edit_state([](json& j) { j.erase("rng_state"); }),
        {"/trainer_state.json", "'rng_state'"});
  check("negative cursor", edit_state([](json& j) { j["data_cursor"] = -5; }),
        {"/trainer_state.json", "'data_cursor'"});
  check("float step", edit_state([](json& j) { j["step"] = 1.5; }),
        {"/trainer_state.json", "'step'"});
  check("loss bits", edit_state([](json& j) { j["last_loss_bits"] = "0x12"; }),
        {"/trainer_state.json", "'last_loss_bits'"});
  check("loss of another type", edit_state([](json& j) { j["last_loss"] = "low"; }),
        {"/trainer_state.json", "'last_loss'"});
  // Counters a resumed run increments: INT64_MAX overflowed at the next step (undefined
  // behaviour); each is bounded by kMaxTrainerCount, and text is not a number.
  for (const char* key : {"step", "tokens_seen", "optimizer_steps", "data_cursor"}) {
    check(key, edit_state([=](json& j) { j[key] = std::numeric_limits<std::int64_t>::max(); }),
          {"/trainer_state.json", fmt::format("'{}'", key), "outside [0, 2^53]"});
    check(key, edit_state([=](json& j) { j[key] = kMaxTrainerCount + 1; }),
          {"/trainer_state.json", fmt::format("'{}'", key), "outside [0, 2^53]"});
    check(key, edit_state([=](json& j) { j[key] = "5"; }),
          {"/trainer_state.json", fmt::format("'{}'", key), "expected an integer"});
  }
  check("negative tokens", edit_state([](json& j) { j["tokens_seen"] = -1; }),
        {"/trainer_state.json", "'tokens_seen'"});
  check("rng state as text", edit_state([](json& j) { j["rng_state"] = "12345"; }),
        {"/trainer_state.json", "'rng_state'"});
  check("more updates than steps", edit_state([](json& j) { j["optimizer_steps"] = 124; }),
        {"/trainer_state.json", "'optimizer_steps'", "124 updates in 123 steps"});
  // What --resume compares must be objects: other types made it skip the comparison.
  check("options not an object", edit_state([](json& j) { j["options"] = json::array(); }),
        {"/trainer_state.json", "'options'", "expected an object"});
  check("dataset not an object", edit_state([](json& j) { j["dataset"] = "x"; }),
        {"/trainer_state.json", "'dataset'", "expected an object"});
  check("no dataset", edit_state([](json& j) { j.erase("dataset"); }),
        {"/trainer_state.json", "'dataset'"});
  // Read through core::read_json_file: deep nesting overflowed the stack when "options" was
  // copied; a FIFO would block.
  check("deep nesting",
        [&](const fs::path& dir) {
          const std::string state = test::read_file((dir / "trainer_state.json").string());
          write(dir / "trainer_state.json", "{\"deep\": " + std::string(100000, '[') +
                                                std::string(100000, ']') + ", " + state.substr(1));
        },
        {"/trainer_state.json", "nested deeper"});
  check("a FIFO",
        [](const fs::path& dir) {
          fs::remove(dir / "trainer_state.json");
          ASSERT_EQ(::mkfifo((dir / "trainer_state.json").c_str(), 0600), 0);
        },
        {"/trainer_state.json", "a FIFO"});
  check("no config", [](const fs::path& dir) { fs::remove(dir / "config.json"); },
        {"/config.json"});
  check("config sizes",
        [&](const fs::path& dir) {
          json j = json::parse(test::read_file((dir / "config.json").string()));
          j["intermediate_size"] = 100;
          write(dir / "config.json", j.dump());
        },
        {"/model.safetensors", "mlp.gate_proj.weight", "expected [100, 128]"});
  check("no weights", [](const fs::path& dir) { fs::remove(dir / "model.safetensors"); },
        {"model.safetensors"});
  check("truncated weights",
        [&](const fs::path& dir) { truncate(dir / "model.safetensors", 5000); },
        {"/model.safetensors"});
  check("no optimizer", [](const fs::path& dir) { fs::remove(dir / "optimizer.safetensors"); },
        {"/optimizer.safetensors", "missing"});
  check("truncated optimizer",
        [&](const fs::path& dir) { truncate(dir / "optimizer.safetensors", 100000); },
        {"/optimizer.safetensors"});
  check("optimizer of another model",
        [&](const fs::path& dir) {
          std::vector<float> v(16 * 128, 0.0f);
          std::vector<model::TensorData> t;
          t.push_back(model::tensor_from_f32("exp_avg.model.embed_tokens.weight", {16, 128}, v));
          model::write_safetensors(dir / "optimizer.safetensors", t);
        },
        {"/optimizer.safetensors", "exp_avg.model.embed_tokens.weight", "expected [259, 128]"});
  // Rewrites optimizer.safetensors, each tensor passed through `edit` (false: left out).
  const auto edit_optimizer =
      [](const std::function<bool(const std::string&, std::vector<float>&)>& edit) {
        return [=](const fs::path& dir) {
          const model::SafetensorsReader r =
              model::SafetensorsReader::open(dir / "optimizer.safetensors");
          std::vector<std::vector<float>> kept;  // F32 tensors borrow their values until written
          std::vector<model::TensorData> t;
          for (const model::TensorInfo& info : r.tensors()) {
            std::vector<float> values = r.read_f32(info.name);
            if (!edit(info.name, values)) continue;
            kept.push_back(std::move(values));
            t.push_back(model::tensor_from_f32(info.name, info.shape, kept.back()));
          }
          model::write_safetensors(dir / "optimizer.safetensors", t);
        };
      };
  check("optimizer missing a tensor",
        edit_optimizer([](const std::string& name, std::vector<float>&) {
          return name != "exp_avg_sq.model.norm.weight";
        }),
        {"/optimizer.safetensors", "exp_avg_sq.model.norm.weight"});
  check("optimizer moment holding a NaN",
        edit_optimizer([](const std::string& name, std::vector<float>& values) {
          if (name == "exp_avg_sq.model.norm.weight")
            values[3] = std::numeric_limits<float>::quiet_NaN();
          return true;
        }),
        {"/optimizer.safetensors", "exp_avg_sq.model.norm.weight", "1 non-finite value(s)",
         "element 3"});
}

// A step-NNNNNN folder holds the state of that step: "step": 0 in step-000002 would redo steps.
TEST(Checkpoint, StepOtherThanTheFolderNameIsRefused) {
  const TempDir run;
  Fixture f(model::preset("tiny"));
  f.state.step = 2;
  const fs::path dir = save_checkpoint(run.path(), f.data());
  json j = json::parse(test::read_file((dir / "trainer_state.json").string()));
  j["step"] = 0;
  j["optimizer_steps"] = 0;
  std::ofstream(dir / "trainer_state.json", std::ios::trunc) << j.dump();
  const std::string e = error_of([&] { load_checkpoint(dir); });
  EXPECT_NE(e.find((dir / "trainer_state.json").string() + ": key 'step': 0, but the folder is "
                                                           "named for step 2"),
            std::string::npos)
      << e;
}

// --resume's checkpoint: the newest step-* entry, which must be complete. A final-named folder
// without a readable trainer_state.json is damage (saves are renamed into place complete); it
// used to be skipped, and the run went on from an older checkpoint without a word.
TEST(Checkpoint, ResumeRefusesADamagedNewestCheckpoint) {
  const TempDir run;
  EXPECT_EQ(resume_checkpoint(run.path()), std::nullopt);
  Fixture f(model::preset("tiny"));
  for (const std::int64_t step : {1, 2}) {
    f.state.step = step;
    save_checkpoint(run.path(), f.data(false));
  }
  const fs::path root = run.path() / "checkpoints";
  const fs::path newest = checkpoint_path(run.path(), 2);
  EXPECT_EQ(resume_checkpoint(run.path()), newest);
  // An older damaged entry is not what a resume would take: ignored, as by list_checkpoints.
  fs::create_directories(root / "step-000000");
  EXPECT_EQ(resume_checkpoint(run.path()), newest);

  const fs::path state = newest / "trainer_state.json";
  const std::string kept = test::read_file(state.string());
  const auto expect_refused = [&](const fs::path& damaged, const std::string& why,
                                  const std::string& way_on) {
    const std::string e = error_of([&] { resume_checkpoint(run.path()); });
    for (const std::string& want : {damaged.string() + " is not a complete checkpoint (", why,
                                    "move it out of " + root.string(), way_on})
      EXPECT_NE(e.find(want), std::string::npos) << why << ": '" << e << "' lacks '" << want << "'";
  };
  fs::remove(state);
  expect_refused(newest, "it has no trainer_state.json", "continues from step-000001");
  fs::create_directory(state);
  expect_refused(newest, "its trainer_state.json is a folder", "continues from step-000001");
  fs::remove(state);
  ASSERT_EQ(::mkfifo(state.c_str(), 0600), 0);
  expect_refused(newest, "not a regular file", "continues from step-000001");
  fs::remove(state);
  fs::create_symlink(run.path() / "nowhere", state);
  expect_refused(newest, "a link to nothing readable", "continues from step-000001");
  fs::remove(state);
  std::ofstream(state) << kept;
  EXPECT_EQ(resume_checkpoint(run.path()), newest);

  // A step-* file newer than every checkpoint; with no complete checkpoint left, the way on is
  // a new run.
  run.write("checkpoints/step-000009", "not a folder");
  expect_refused(root / "step-000009", "it is not a folder", "continues from step-000002");
  fs::remove_all(checkpoint_path(run.path(), 1));
  fs::remove_all(newest);
  const std::string e = error_of([&] { resume_checkpoint(run.path()); });
  EXPECT_NE(e.find("starts a new run"), std::string::npos) << e;
}

TEST(Checkpoint, SaveRejectsInconsistentData) {
  const TempDir run;
  Fixture f(model::preset("tiny"));
  const std::vector<float> short_buffer(10);
  CheckpointData d = f.data();
  d.params = short_buffer;
  EXPECT_NE(error_of([&] { save_checkpoint(run.path(), d); }).find("parameter elements"),
            std::string::npos);
  d = f.data();
  d.exp_avg_sq = {};
  EXPECT_NE(error_of([&] { save_checkpoint(run.path(), d); }).find("moments"), std::string::npos);
  const ParameterLayout other = ParameterLayout::for_config(small_qwen2());
  d = f.data();
  d.layout = &other;
  EXPECT_NE(error_of([&] { save_checkpoint(run.path(), d); }).find("layout"), std::string::npos);
  d = f.data();
  d.extra_files = {run.path() / "no-such-tokenizer.json"};
  EXPECT_NE(error_of([&] { save_checkpoint(run.path(), d); }).find("no-such-tokenizer.json"),
            std::string::npos);
  // Counters load_checkpoint would refuse are not written.
  d = f.data();
  d.state.tokens_seen = kMaxTrainerCount + 1;
  EXPECT_NE(error_of([&] { save_checkpoint(run.path(), d); }).find("tokens_seen"),
            std::string::npos);
  d = f.data();
  d.state.data_cursor = std::uint64_t{kMaxTrainerCount} + 1;
  EXPECT_NE(error_of([&] { save_checkpoint(run.path(), d); }).find("data_cursor"),
            std::string::npos);
  // Nothing left behind by the failed saves: no final folder, no temporary one.
  EXPECT_TRUE(list_checkpoints(run.path()).empty());
  EXPECT_TRUE(hidden_in(run.path() / "checkpoints").empty());
}

// ---- a writer killed at random moments -------------------------------------------------------

// A ~20 MB model (5M float32 parameters; with moments 60 MB per checkpoint).
LlamaConfig kill_config() {
  LlamaConfig c = model::preset("tiny");
  c.vocab_size = 1024;
  c.hidden_size = 256;
  c.intermediate_size = 704;
  c.num_hidden_layers = 6;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 64;
  c.pad_token_id.reset();
  c.bos_token_id.reset();
  c.eos_token_ids.clear();
  return c;
}

// What step `step` of the writer saves: the fixture, marked with the step in the first element
// of every tensor, and counters derived from it.
void mark(Fixture& f, const Fixture& base, std::int64_t step) {
  for (const model::ParameterInfo& p : f.layout.params()) {
    f.params[p.offset] = static_cast<float>(step) + base.params[p.offset];
    f.exp_avg[p.offset] = -static_cast<float>(step);
    f.exp_avg_sq[p.offset] = static_cast<float>(step) * 0.5f;
  }
  f.state.step = step;
  f.state.tokens_seen = step * 4096;
  f.state.data_cursor = std::uint64_t{kMaxTrainerCount} - static_cast<std::uint64_t>(step);
  f.state.rng_state = static_cast<std::uint64_t>(step) * 0x9e3779b97f4a7c15ull;
  f.state.last_loss = 1.0 / static_cast<double>(step + 3);
}

TEST(Checkpoint, SurvivesSigkillDuringSave) {
  const TempDir run;
  const Fixture base(kill_config());
  ASSERT_GT(base.layout.count(), 4'500'000);
  Fixture f = base;
  const std::uint32_t seed = std::random_device{}();
  SCOPED_TRACE(fmt::format("seed {}", seed));
  std::mt19937 gen(seed);
  std::vector<int> delays_ms = {40, 180, 450, 900, 1600};
  std::shuffle(delays_ms.begin(), delays_ms.end(), gen);
  int hidden_seen = 0;
  std::int64_t newest = -1;
  for (std::size_t round = 0; round < delays_ms.size(); ++round) {
    const int delay = delays_ms[round] + static_cast<int>(gen() % 97);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a test that failed early
      // The writer: checkpoint after checkpoint, keeping three, until killed. Only
      // async-signal-safe exits from here on (no return into gtest).
      try {
        for (std::int64_t i = 0; i < 10'000; ++i) {
          const std::int64_t step = static_cast<std::int64_t>(round) * 1000 + i;
          mark(f, base, step);
          save_checkpoint(run.path(), f.data());
          prune_checkpoints(run.path(), 3);
        }
      } catch (const std::exception& e) {
        std::cerr << "writer: " << e.what() << "\n";
        ::_exit(1);
      }
      ::_exit(0);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the writer ended on its own, status " << status;

    hidden_seen += static_cast<int>(hidden_in(run.path() / "checkpoints").size());
    // Every listed checkpoint loads, and holds exactly what its step saved.
    const std::vector<fs::path> all = list_checkpoints(run.path());
    for (const fs::path& dir : all) {
      SCOPED_TRACE(dir.string());
      const LoadedCheckpoint got = load_checkpoint(dir);
      Fixture want = base;
      mark(want, base, got.state.step);
      EXPECT_EQ(dir, checkpoint_path(run.path(), got.state.step));
      expect_same_state(got.state, want.state);
      EXPECT_TRUE(same_bits(got.params, want.params));
      EXPECT_TRUE(same_bits(got.exp_avg, want.exp_avg));
      EXPECT_TRUE(same_bits(got.exp_avg_sq, want.exp_avg_sq));
    }
    const std::optional<fs::path> latest = latest_checkpoint(run.path());
    EXPECT_EQ(resume_checkpoint(run.path()), latest);  // a kill never leaves a damaged one
    if (latest) {
      const std::int64_t step = load_checkpoint(*latest).state.step;
      EXPECT_GE(step, newest);  // never older than what an earlier round left
      newest = step;
    } else {
      EXPECT_EQ(newest, -1) << "an earlier round's checkpoints disappeared";
    }
    std::cerr << fmt::format(
        "[ kill    ] round {}: killed after {} ms, {} checkpoints, latest "
        "step {}, {} hidden folders\n",
        round, delay, all.size(), newest, hidden_in(run.path() / "checkpoints").size());
  }
  EXPECT_GE(newest, 0) << "no checkpoint completed in any round (is the disk very slow?)";
  // The killed writers' hidden leftovers are swept by the next prune (their pids are gone).
  prune_checkpoints(run.path(), 3);
  EXPECT_TRUE(hidden_in(run.path() / "checkpoints").empty());
  std::cerr << "[ kill    ] hidden folders seen after kills: " << hidden_seen << "\n";
}

// ---- transformers loads what we write --------------------------------------------------------

std::string python_exe() {
  const char* env = std::getenv("ANCHORCTX_PYTHON");
  return env && *env ? env : "python3";
}

// transformers' from_pretrained loads a checkpoint folder: no missing or unexpected keys, the
// parameter count and a tensor's values as saved, and logits equal to our float32 inference's.
TEST(Checkpoint, TransformersLoadsTheFolder) {
  const std::string python = python_exe();
  if (std::system((python + " -c 'import torch, transformers' >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << python << " cannot import torch and transformers";
  LlamaConfig llama = model::preset("tiny");
  llama.num_hidden_layers = 2;
  LlamaConfig mistral = llama;
  mistral.model_type = model::ModelType::mistral;
  mistral.tie_word_embeddings = true;
  mistral.rope_theta = 1e6;
  for (const LlamaConfig& config : {llama, small_qwen2(), mistral}) {
    SCOPED_TRACE(std::string(model::to_string(config.model_type)));
    const TempDir run;
    Fixture f(config, 11);
    // Non-trivial biases and norms, so that a misplaced one changes the logits.
    std::mt19937 gen(5);
    std::uniform_real_distribution<float> u(-0.5f, 0.5f);
    for (const model::ParameterInfo& p : f.layout.params()) {
      if (p.shape.size() != 1) continue;
      for (std::size_t i = p.offset; i < p.offset + p.size; ++i)
        f.params[i] = (p.name.ends_with(".bias") ? 0.0f : 1.0f) + u(gen);
    }
    const fs::path dir = save_checkpoint(run.path(), f.data());

    const std::vector<std::int32_t> ids = {256, 72, 101, 108, 108, 111, 44, 32, 119};
    model::LlamaInference inference(model::load_llama_model(dir));
    json logits = json::array();
    for (const std::int32_t id : ids) {
      const std::span<const float> l = inference.step(id);
      logits.push_back(std::vector<float>(l.begin(), l.end()));
    }
    const std::string name = "model.layers.1.self_attn.k_proj.weight";
    const model::ParameterInfo& p = f.layout.at(name);
    json expected = {
        {"architecture", config.model_type == model::ModelType::qwen2     ? "Qwen2ForCausalLM"
                         : config.model_type == model::ModelType::mistral ? "MistralForCausalLM"
                                                                          : "LlamaForCausalLM"},
        {"num_parameters", f.layout.count()},
        {"tensor", name},
        {"shape", p.shape},
        {"values",
         std::vector<float>(f.params.begin() + static_cast<std::ptrdiff_t>(p.offset),
                            f.params.begin() + static_cast<std::ptrdiff_t>(p.offset + p.size))},
        {"input_ids", ids},
        {"logits", logits},
        {"atol", 2e-4},
    };
    const std::string expected_path = run.write("expected.json", expected.dump());
    const fs::path script = fs::path(ANCHORCTX_TESTS_DIR) / "train" / "check_hf_load.py";
    const std::string cmd =
        fmt::format("{} '{}' '{}' '{}'", python, script.string(), dir.string(), expected_path);
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
}

// The reference preset's save and load times (run by hand: --gtest_also_run_disabled_tests).
TEST(Checkpoint, DISABLED_ReferencePresetTiming) {
  const TempDir run;
  const auto t0 = std::chrono::steady_clock::now();
  Fixture f(model::preset("reference"));
  const auto t1 = std::chrono::steady_clock::now();
  const fs::path dir = save_checkpoint(run.path(), f.data());
  const auto t2 = std::chrono::steady_clock::now();
  const LoadedCheckpoint got = load_checkpoint(dir);
  const auto t3 = std::chrono::steady_clock::now();
  EXPECT_TRUE(same_bits(got.params, f.params));
  const auto s = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  std::uintmax_t bytes = 0;
  for (const auto& e : fs::directory_iterator(dir))
    bytes += e.file_size();
  std::cerr << fmt::format(
      "reference: {} parameters, {:.1f} MB on disk; init+moments {:.2f} s, save {:.2f} s, "
      "load {:.2f} s\n",
      f.layout.count(), static_cast<double>(bytes) / 1e6, s(t0, t1), s(t1, t2), s(t2, t3));
}

}  // namespace
}  // namespace anchorctx::train

// Checkpoints: save (atomic folder), list, prune, load (see checkpoint.h).
//
// Folder contents, written in this order into the hidden temporary folder:
//   config.json            the model's config, torch_dtype "float32" (the weights below)
//   model.safetensors      the parameters under their HF names, float32
//   optimizer.safetensors  exp_avg.<name>, exp_avg_sq.<name> (only with optimizer state)
//   <extra files>          tokenizer files, copied
//   trainer_state.json     last: its presence marks a complete folder (list_checkpoints)
// trainer_state.json: {"version", "step", "tokens_seen", "data_cursor" (JSON integers in
// [0, kMaxTrainerCount]), "rng_state" (a JSON integer, all 64 bits exact), "last_loss" (a
// number, null when not finite) and "last_loss_bits" (its float64 bit pattern, "0x" + 16 hex
// digits: what resume reads, so the value is bit-exact), "optimizer_steps" (at most "step"),
// "optimizer_state" (whether optimizer.safetensors was written), "options" and "dataset"
// (objects, compared on resume: train/resume_rules.h)}.
#include "anchorctx/train/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "anchorctx/core/atomic_dir.h"
#include "anchorctx/core/atomic_file.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/json_file.h"
#include "anchorctx/model/safetensors.h"

namespace anchorctx::train {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr std::string_view kStateFile = "trainer_state.json";
constexpr std::string_view kConfigFile = "config.json";
constexpr std::string_view kOptimizerFile = "optimizer.safetensors";
constexpr std::string_view kStepPrefix = "step-";

// The step of a folder named step-NNNNNN (digits only); nullopt for any other name.
std::optional<std::int64_t> parse_step_name(const std::string& name) {
  if (!name.starts_with(kStepPrefix) || name.size() == kStepPrefix.size()) return std::nullopt;
  const char* first = name.data() + kStepPrefix.size();
  const char* last = name.data() + name.size();
  if (!std::all_of(first, last, [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  std::int64_t step = 0;
  const auto [end, ec] = std::from_chars(first, last, step);
  if (ec != std::errc() || end != last) return std::nullopt;
  return step;
}

// A hidden name beside `path` for a folder on its way out: `.<name>.tmp-<pid>-<what>`, the
// pattern of core::AtomicDir's temporary folders, so list_checkpoints ignores it and prune's
// sweep of dead writers' leftovers removes it.
fs::path hidden_name(const fs::path& path, std::string_view what) {
  return path.parent_path() /
         fmt::format(".{}.tmp-{}-{}", path.filename().string(), ::getpid(), what);
}

// The layout the checkpoint writes must be the one its config gives (that is what load uses).
void check_layout(const model::ParameterLayout& given, const model::ParameterLayout& expected) {
  require(given.total() == expected.total() && given.params().size() == expected.params().size(),
          "save_checkpoint: the layout ({} tensors, {} elements) is not the config's ({} tensors, "
          "{} elements)",
          given.params().size(), given.total(), expected.params().size(), expected.total());
  for (std::size_t i = 0; i < given.params().size(); ++i) {
    const model::ParameterInfo &a = given.params()[i], &b = expected.params()[i];
    require(a.name == b.name && a.shape == b.shape && a.offset == b.offset && a.size == b.size,
            "save_checkpoint: layout tensor {} ('{}') differs from the config's ('{}')", i, a.name,
            b.name);
  }
}

std::vector<model::TensorData> slices(const model::ParameterLayout& layout,
                                      std::span<const float> buffer, std::string_view prefix) {
  std::vector<model::TensorData> tensors;
  tensors.reserve(layout.params().size());
  for (const model::ParameterInfo& p : layout.params()) {
    tensors.push_back(model::tensor_from_f32(std::string(prefix) + p.name, p.shape,
                                             buffer.subspan(p.offset, p.size)));
  }
  return tensors;
}

json state_to_json(const TrainerState& s, std::int64_t optimizer_steps, bool optimizer_state) {
  json j = json::object();
  j["version"] = kTrainerStateVersion;
  j["step"] = s.step;
  j["tokens_seen"] = s.tokens_seen;
  j["data_cursor"] = s.data_cursor;  // nlohmann keeps uint64 exact (number_unsigned)
  j["rng_state"] = s.rng_state;
  j["last_loss"] = std::isfinite(s.last_loss) ? json(s.last_loss) : json(nullptr);
  j["last_loss_bits"] = fmt::format("0x{:016x}", std::bit_cast<std::uint64_t>(s.last_loss));
  j["optimizer_steps"] = optimizer_steps;
  j["optimizer_state"] = optimizer_state;
  j["options"] = s.options;
  j["dataset"] = s.dataset;
  return j;
}

// ---- reading trainer_state.json: every error names the file and the key ----

const json& get_key(const json& j, const char* key, const std::string& file) {
  const auto it = j.find(key);
  if (it == j.end()) fail("{}: missing key '{}'", file, key);
  return *it;
}

// A counter in [0, kMaxTrainerCount]: a JSON integer (not a float, not text).
std::int64_t get_count(const json& j, const char* key, const std::string& file) {
  const json& v = get_key(j, key, file);
  if (!v.is_number_integer())
    fail("{}: key '{}': expected an integer, got {}", file, key, v.dump());
  const bool in_range =
      v.is_number_unsigned()
          ? v.get<std::uint64_t>() <= std::uint64_t{kMaxTrainerCount}
          : v.get<std::int64_t>() >= 0 && v.get<std::int64_t>() <= kMaxTrainerCount;
  require(in_range, "{}: key '{}': {} is outside [0, 2^53]", file, key, v.dump());
  return v.get<std::int64_t>();
}

// Any unsigned 64-bit integer (the generator state), as a JSON integer.
std::uint64_t get_uint64(const json& j, const char* key, const std::string& file) {
  const json& v = get_key(j, key, file);
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) return v.get<std::uint64_t>();
  fail("{}: key '{}': expected an unsigned 64-bit integer, got {}", file, key, v.dump());
}

double get_loss(const json& j, const std::string& file) {
  const json& v = get_key(j, "last_loss_bits", file);
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    std::uint64_t bits = 0;
    if (s.size() == 18 && s.starts_with("0x")) {
      const auto [end, ec] = std::from_chars(s.data() + 2, s.data() + s.size(), bits, 16);
      if (ec == std::errc() && end == s.data() + s.size()) return std::bit_cast<double>(bits);
    }
  }
  fail("{}: key 'last_loss_bits': expected \"0x\" and 16 hex digits, got {}", file, v.dump());
}

// Fills `out` (layout.total() elements, padding zero) from `prefix + name` tensors of the
// optimizer file, checking shapes and that nothing else is there.
void load_moments(const model::SafetensorsReader& reader, const model::ParameterLayout& layout,
                  std::string_view prefix, std::vector<float>& out) {
  out.assign(layout.total(), 0.0f);
  for (const model::ParameterInfo& p : layout.params()) {
    const std::string name = std::string(prefix) + p.name;
    const model::TensorInfo* info = reader.find(name);
    if (info == nullptr) fail("{}: no tensor '{}'", reader.source(), name);
    if (info->shape != p.shape) {
      fail("tensor '{}' in {}: shape [{}], expected [{}]", name, reader.source(),
           fmt::join(info->shape, ", "), fmt::join(p.shape, ", "));
    }
    reader.read_f32_into(name, std::span<float>(out).subspan(p.offset, p.size));
  }
  // Resuming from a NaN moment would make every later update NaN: refused like NaN weights.
  if (const auto bad = model::find_non_finite(layout, out))
    fail(
        "tensor '{}{}' in {}: {} non-finite value(s), the first at element {} ({}); the "
        "optimizer state is damaged and is not loaded",
        prefix, bad->tensor, reader.source(), bad->values.count, bad->values.first,
        bad->values.value);
}

}  // namespace

void check_extra_file(const fs::path& file) {
  const std::string name = file.filename().string();
  require(!name.empty() && name != kConfigFile && name != kOptimizerFile && name != kStateFile &&
              !name.ends_with(".safetensors") && name != "model.safetensors.index.json",
          "{}: an extra file may not be named like a checkpoint file", file.string());
  std::error_code ec;
  require(fs::is_regular_file(file, ec), "{}: not a regular file to copy into the checkpoints",
          file.string());
}

fs::path checkpoint_path(const fs::path& run_dir, std::int64_t step) {
  require(step >= 0, "checkpoint step {} is negative", step);
  return run_dir / "checkpoints" / fmt::format("step-{:06d}", step);
}

fs::path save_checkpoint(const fs::path& run_dir, const CheckpointData& data) {
  require(data.config != nullptr && data.layout != nullptr,
          "save_checkpoint: config and layout are required");
  const model::ParameterLayout expected = model::ParameterLayout::for_config(*data.config);
  check_layout(*data.layout, expected);
  const model::ParameterLayout& layout = *data.layout;
  require(data.params.size() == layout.total(),
          "save_checkpoint: {} parameter elements, the layout has {}", data.params.size(),
          layout.total());
  const bool optimizer_state = !data.exp_avg.empty() || !data.exp_avg_sq.empty();
  if (optimizer_state) {
    require(data.exp_avg.size() == layout.total() && data.exp_avg_sq.size() == layout.total(),
            "save_checkpoint: optimizer moments of {} and {} elements, the layout has {}",
            data.exp_avg.size(), data.exp_avg_sq.size(), layout.total());
  }
  // What load_checkpoint refuses is not written: a checkpoint that cannot be resumed.
  const auto check_count = [](const char* key, std::int64_t v) {
    require(v >= 0 && v <= kMaxTrainerCount, "save_checkpoint: {} {} is outside [0, 2^53]", key, v);
  };
  check_count("step", data.state.step);
  check_count("tokens_seen", data.state.tokens_seen);
  check_count("optimizer_steps", data.optimizer_steps);
  require(data.state.data_cursor <= std::uint64_t{kMaxTrainerCount},
          "save_checkpoint: data_cursor {} is outside [0, 2^53]", data.state.data_cursor);
  const fs::path final_path = checkpoint_path(run_dir, data.state.step);

  fs::path old;  // a replaced folder, moved aside until the new one is in place
  try {
    core::AtomicDir dir(final_path, /*replace=*/true);
    model::LlamaConfig config = *data.config;
    config.torch_dtype = "float32";
    model::save_config(config, dir.path() / kConfigFile);

    model::write_model_safetensors(dir.path(), slices(layout, data.params, ""));
    if (optimizer_state) {
      std::vector<model::TensorData> tensors = slices(layout, data.exp_avg, "exp_avg.");
      std::vector<model::TensorData> sq = slices(layout, data.exp_avg_sq, "exp_avg_sq.");
      std::move(sq.begin(), sq.end(), std::back_inserter(tensors));
      model::write_safetensors(dir.path() / kOptimizerFile, tensors);
    }
    for (const fs::path& extra : data.extra_files) {
      check_extra_file(extra);
      const std::string name = extra.filename().string();
      std::error_code ec;
      fs::copy_file(extra, dir.path() / name, fs::copy_options::overwrite_existing, ec);
      if (ec) fail("{}: cannot copy into the checkpoint: {}", extra.string(), ec.message());
    }
    const std::int64_t steps = optimizer_state ? data.optimizer_steps : 0;
    core::write_file_atomic(dir.path() / kStateFile,
                            state_to_json(data.state, steps, optimizer_state).dump(2) + "\n");

    // AtomicDir's replace removes the old folder in place before the rename; a kill in the
    // middle of that would leave a half-deleted step-* folder. Renaming it aside first keeps
    // every visible step-* folder complete.
    std::error_code ec;
    if (fs::exists(final_path, ec)) {
      old = hidden_name(final_path, "old");
      fs::rename(final_path, old, ec);
      if (ec) fail("cannot move the previous folder aside: {}", ec.message());
    }
    dir.commit();
  } catch (const Error& e) {
    std::error_code ec;
    if (!old.empty() && !fs::exists(final_path, ec)) fs::rename(old, final_path, ec);
    fail("checkpoint {}: {}", final_path.string(), e.what());
  } catch (const fs::filesystem_error& e) {
    std::error_code ec;
    if (!old.empty() && !fs::exists(final_path, ec)) fs::rename(old, final_path, ec);
    fail("checkpoint {}: {}", final_path.string(), e.what());
  }
  if (!old.empty()) {
    std::error_code ec;
    fs::remove_all(old, ec);  // the new checkpoint is in place; a leftover is swept by prune
  }
  return final_path;
}

std::vector<fs::path> list_checkpoints(const fs::path& run_dir) {
  const fs::path root = run_dir / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return {};
  std::vector<std::pair<std::int64_t, fs::path>> found;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const std::optional<std::int64_t> step = parse_step_name(it->path().filename().string());
    if (!step) continue;  // hidden temporary folders (".step-*.tmp-*") and anything else
    std::error_code ec2;
    if (!it->is_directory(ec2)) continue;
    if (!fs::is_regular_file(it->path() / kStateFile, ec2)) continue;  // incomplete
    found.emplace_back(*step, it->path());
  }
  if (ec) fail("{}: cannot list: {}", root.string(), ec.message());
  std::sort(found.begin(), found.end());
  std::vector<fs::path> out;
  out.reserve(found.size());
  for (auto& [step, path] : found)
    out.push_back(std::move(path));
  return out;
}

std::optional<fs::path> latest_checkpoint(const fs::path& run_dir) {
  std::vector<fs::path> all = list_checkpoints(run_dir);
  if (all.empty()) return std::nullopt;
  return std::move(all.back());
}

std::optional<fs::path> resume_checkpoint(const fs::path& run_dir) {
  const std::vector<fs::path> complete = list_checkpoints(run_dir);
  const std::int64_t newest_complete =
      complete.empty() ? -1 : *parse_step_name(complete.back().filename().string());
  // The newest step-* entry that list_checkpoints left out, if newer than its newest.
  const fs::path root = run_dir / "checkpoints";
  std::error_code ec;
  std::optional<std::pair<std::int64_t, fs::path>> damaged;
  if (fs::is_directory(root, ec)) {
    for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
      const std::optional<std::int64_t> step = parse_step_name(it->path().filename().string());
      if (!step || *step < newest_complete || (damaged && *step <= damaged->first)) continue;
      if (std::find(complete.begin(), complete.end(), it->path()) == complete.end())
        damaged.emplace(*step, it->path());
    }
    if (ec) fail("{}: cannot list: {}", root.string(), ec.message());
  }
  if (!damaged) {
    if (complete.empty()) return std::nullopt;
    return complete.back();
  }
  const fs::path& dir = damaged->second;
  const fs::path state = dir / kStateFile;
  std::string what;
  if (!fs::is_directory(dir, ec)) {
    what = "it is not a folder";
  } else {
    const fs::file_status st = fs::symlink_status(state, ec);
    if (!fs::exists(st))
      what = "it has no trainer_state.json";
    else if (fs::is_symlink(st))
      what = "its trainer_state.json is a link to nothing readable";
    else if (fs::is_directory(st))
      what = "its trainer_state.json is a folder";
    else
      what = "its trainer_state.json is not a regular file";
  }
  const std::string way_on = complete.empty() ? std::string("--resume then starts a new run")
                                              : fmt::format("--resume then continues from {}",
                                                            complete.back().filename().string());
  fail(
      "--resume: {} is not a complete checkpoint ({}). Checkpoints are renamed into place only "
      "when complete, so it is damaged, and an older one is not taken in its place silently. "
      "Restore it, or move it out of {} ({})",
      dir.string(), what, root.string(), way_on);
}

// Beyond the header: a pruned folder is first renamed to a hidden name (atomic), then deleted,
// so a kill during the deletion never leaves a half-deleted step-* folder. Prune also sweeps
// hidden `.step-*.tmp-<pid>-*` folders whose writer process no longer exists on this machine
// (left by a killed save); folders of live processes, ours included, are left alone.
void prune_checkpoints(const fs::path& run_dir, int keep_last) {
  const fs::path root = run_dir / "checkpoints";
  std::error_code ec;
  if (keep_last > 0) {
    const std::vector<fs::path> all = list_checkpoints(run_dir);
    const std::size_t keep = static_cast<std::size_t>(keep_last);
    for (std::size_t i = 0; i + keep < all.size(); ++i) {
      const fs::path doomed = hidden_name(all[i], "prune");
      fs::rename(all[i], doomed, ec);
      if (ec) fail("{}: cannot remove: {}", all[i].string(), ec.message());
      fs::remove_all(doomed, ec);
      if (ec) fail("{}: cannot remove: {}", doomed.string(), ec.message());
    }
  }
  if (fs::is_directory(root, ec)) core::sweep_stale_temporaries(root, ".step-");
}

LoadedCheckpoint load_checkpoint(const fs::path& dir) {
  std::error_code ec;
  require(fs::is_directory(dir, ec), "{}: not a checkpoint folder (missing or not a folder)",
          dir.string());
  const std::string state_file = (dir / kStateFile).string();
  // Through read_json_file: a FIFO would block, and nesting deeper than it allows overflowed
  // the stack when "options" was copied below.
  const json j = core::read_json_file(state_file, "the trainer state");
  require(j.is_object(), "{}: expected a JSON object", state_file);
  const json& version = get_key(j, "version", state_file);
  require(version.is_number_integer() && version == kTrainerStateVersion,
          "{}: trainer_state version {}, this build reads version {}", state_file, version.dump(),
          kTrainerStateVersion);

  LoadedCheckpoint out;
  out.state.step = get_count(j, "step", state_file);
  // The folder's name is the step the checkpoint was saved at (checkpoint_path); a state that
  // says otherwise was edited or moved, and resuming it would redo or skip steps.
  if (const std::optional<std::int64_t> named = parse_step_name(dir.filename().string()))
    require(*named == out.state.step, "{}: key 'step': {}, but the folder is named for step {}",
            state_file, out.state.step, *named);
  out.state.tokens_seen = get_count(j, "tokens_seen", state_file);
  out.state.data_cursor = static_cast<std::uint64_t>(get_count(j, "data_cursor", state_file));
  out.state.rng_state = get_uint64(j, "rng_state", state_file);
  out.state.last_loss = get_loss(j, state_file);
  if (const auto it = j.find("last_loss"); it != j.end())
    require(it->is_number() || it->is_null(), "{}: key 'last_loss': expected a number, got {}",
            state_file, it->dump());
  out.optimizer_steps = get_count(j, "optimizer_steps", state_file);
  require(out.optimizer_steps <= out.state.step,
          "{}: key 'optimizer_steps': {} updates in {} steps (a step makes at most one)",
          state_file, out.optimizer_steps, out.state.step);
  // The options and the dataset identity are what --resume compares (resume_rules.h): another
  // JSON type there made the comparison skip them, so a resume took another dataset or seed.
  out.state.options = get_key(j, "options", state_file);
  require(out.state.options.is_object(), "{}: key 'options': expected an object, got {}",
          state_file, out.state.options.type_name());
  out.state.dataset = get_key(j, "dataset", state_file);
  require(out.state.dataset.is_object(), "{}: key 'dataset': expected an object, got {}",
          state_file, out.state.dataset.type_name());
  const json& has_opt = get_key(j, "optimizer_state", state_file);
  require(has_opt.is_boolean(), "{}: key 'optimizer_state': expected true or false", state_file);

  out.config = model::load_config(dir / kConfigFile);
  const model::ParameterLayout layout = model::ParameterLayout::for_config(out.config);
  out.params.assign(layout.total(), 0.0f);
  model::load_parameters(model::SafetensorsReader::open(dir), layout, out.params);

  const fs::path opt_file = dir / kOptimizerFile;
  if (has_opt.get<bool>()) {
    require(fs::is_regular_file(opt_file, ec),
            "{}: missing (trainer_state.json says the checkpoint has optimizer state)",
            opt_file.string());
    const model::SafetensorsReader reader = model::SafetensorsReader::open(opt_file);
    load_moments(reader, layout, "exp_avg.", out.exp_avg);
    load_moments(reader, layout, "exp_avg_sq.", out.exp_avg_sq);
    require(reader.tensors().size() == 2 * layout.params().size(),
            "{}: {} tensors, expected {} (exp_avg.* and exp_avg_sq.* per parameter)",
            opt_file.string(), reader.tensors().size(), 2 * layout.params().size());
  } else {
    require(out.optimizer_steps == 0, "{}: optimizer_steps {} without optimizer state", state_file,
            out.optimizer_steps);
  }
  return out;
}

}  // namespace anchorctx::train

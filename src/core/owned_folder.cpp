// The `--force` rule (see owned_folder.h).
#include "anchorctx/core/owned_folder.h"

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <system_error>

#include "anchorctx/core/error.h"

namespace anchorctx::core {
namespace fs = std::filesystem;
namespace {

// The absolute path with symbolic links resolved where it exists (weakly_canonical), so `a/..`,
// `./a` and a link to a folder compare equal to the folder itself.
fs::path resolved(const fs::path& p) {
  std::error_code ec;
  fs::path r = fs::weakly_canonical(fs::absolute(p, ec), ec);
  return ec ? fs::absolute(p).lexically_normal() : r;
}

// Whether `inner` is `outer` or lies below it (both resolved).
bool within(const fs::path& inner, const fs::path& outer) {
  auto i = inner.begin();
  for (auto o = outer.begin(); o != outer.end(); ++o, ++i) {
    if (o->empty()) continue;  // a trailing separator
    if (i == inner.end() || *i != *o) return false;
  }
  return true;
}

// The checks every replaced path passes, folder or file: not a place whose removal is never
// what the user meant, not an input and not holding one.
void check_not_special(const fs::path& target, const std::string& what,
                       std::span<const fs::path> inputs, const std::string& asked_by) {
  const std::string t = target.string();
  const fs::path last = fs::path(t.substr(0, t.find_last_not_of('/') + 1)).filename();
  if (t.empty() || last == "." || last == "..")
    fail("{}: refusing to replace '{}': it names the current or a parent folder, not a {}",
         asked_by, t, what);
  const fs::path real = resolved(target);
  if (real == real.root_path()) fail("{}: refusing to replace '{}': the root folder", asked_by, t);
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    if (real == resolved(home)) fail("{}: refusing to replace '{}': the home folder", asked_by, t);
  }
  std::error_code ec;
  const fs::path cwd = fs::current_path(ec);
  if (!ec && within(resolved(cwd), real))
    fail("{}: refusing to replace '{}': it is or holds the current folder", asked_by, t);
  for (const fs::path& input : inputs) {
    if (input.empty()) continue;
    const fs::path in = resolved(input);
    if (within(in, real))
      fail("{}: refusing to replace '{}': it is or holds the input '{}'", asked_by, t,
           input.string());
    if (within(real, in))
      fail("{}: refusing to replace '{}': it lies inside the input '{}'", asked_by, t,
           input.string());
  }
}

}  // namespace

void check_replaceable_folder(const fs::path& target, const OwnedFolderRule& rule,
                              std::span<const fs::path> inputs) {
  const std::string& asked_by = rule.asked_by;
  check_not_special(target, rule.kind, inputs, asked_by);
  const std::string t = target.string();
  std::error_code ec;
  const fs::file_status link = fs::symlink_status(target, ec);
  if (fs::is_symlink(link))
    fail("{}: refusing to replace '{}': a symbolic link, not a {} written by anchorctx", asked_by,
         t, rule.kind);
  if (!fs::is_directory(link))
    fail("{}: refusing to replace '{}': not a folder (a {} is a folder)", asked_by, t, rule.kind);
  std::vector<std::string> seen;
  for (fs::directory_iterator it(target, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const auto listed = [&name](const std::vector<std::string>& names) {
      return std::find(names.begin(), names.end(), name) != names.end();
    };
    std::error_code ec2;
    const bool file = (listed(rule.required) || listed(rule.optional)) && it->is_regular_file(ec2);
    const bool folder = listed(rule.folders) && it->is_directory(ec2);
    if ((!file && !folder) || it->is_symlink(ec2))
      fail(
          "{}: refusing to replace '{}': it holds '{}', which a {} written by anchorctx "
          "does not; remove the folder yourself if it is no longer needed",
          asked_by, t, name, rule.kind);
    seen.push_back(name);
  }
  if (ec) fail("{}: cannot list '{}': {}", asked_by, t, ec.message());
  for (const std::string& name : rule.required) {
    if (std::find(seen.begin(), seen.end(), name) == seen.end())
      fail("{}: refusing to replace '{}': no '{}', so not a {} written by anchorctx", asked_by, t,
           name, rule.kind);
  }
  if (rule.identify) {
    const std::string why = rule.identify(target);
    if (!why.empty())
      fail("{}: refusing to replace '{}': {}, so not a {} written by anchorctx", asked_by, t, why,
           rule.kind);
  }
}

void check_replaceable_file(const fs::path& target, const std::string& what,
                            std::span<const fs::path> inputs,
                            const std::function<std::string(const fs::path&)>& identify) {
  check_not_special(target, what, inputs, "--force");
  const std::string t = target.string();
  std::error_code ec;
  const fs::file_status status = fs::symlink_status(target, ec);
  if (!fs::is_regular_file(status))
    fail("--force: refusing to replace '{}': not a regular file (a {} is one)", t, what);
  if (identify) {
    const std::string why = identify(target);
    if (!why.empty())
      fail("--force: refusing to replace '{}': {}, so not a {} written by anchorctx", t, why, what);
  }
}

bool lies_within(const fs::path& inner, const fs::path& outer) {
  return within(resolved(inner), resolved(outer));
}

}  // namespace anchorctx::core

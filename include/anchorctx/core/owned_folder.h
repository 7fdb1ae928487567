// What `--force` may replace: only an output the project wrote itself, recognised by its files.
//
// `--force` used to remove whatever folder `--out` named (`.`, `..`, the corpus's own folder).
// A folder is now replaced only when all of these hold, else anchorctx::Error says which failed:
//   - the path is not `.`, `..`, `/`, the home folder, the current folder or one of its ancestors;
//   - it is not an input of the command and holds none (inputs are being read);
//   - it is a real folder (not a file or a symbolic link) holding only regular files whose names
//     the rule knows (and the sub-folders it names), every `required` one among them, and
//     `identify` (when given) accepts it.
// A file output (`convert to-llama2c --out x.bin`) is replaced only when it is a regular file
// that is not an input, lies in no input folder, and `identify` accepts it.
#pragma once

#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace anchorctx::core {

struct OwnedFolderRule {
  std::string kind;                   // for messages: "dataset folder", "model folder"
  std::vector<std::string> required;  // names every such folder holds
  std::vector<std::string> optional;  // names it may hold besides
  std::vector<std::string> folders;   // names of sub-folders it may hold (written by us too)
  // Content check beyond the names (e.g. meta.json's format); returns an empty string when the
  // folder is ours, else why not. Optional.
  std::function<std::string(const std::filesystem::path&)> identify;
  // What asks for the replacement, starting the messages ("--force: refusing to replace ...").
  std::string asked_by = "--force";
};

// Throws anchorctx::Error naming the reason unless the existing folder `target` may be removed
// and replaced under `rule` (see above). `inputs`: the files and folders the command reads.
void check_replaceable_folder(const std::filesystem::path& target, const OwnedFolderRule& rule,
                              std::span<const std::filesystem::path> inputs);

// The same for an existing file: `what` names it in messages ("llama2.c checkpoint");
// `identify` returns an empty string when the file is one we write, else why not.
void check_replaceable_file(
    const std::filesystem::path& target, const std::string& what,
    std::span<const std::filesystem::path> inputs,
    const std::function<std::string(const std::filesystem::path&)>& identify);

// Whether `inner` is `outer` or lies below it, both made absolute with symbolic links resolved
// where they exist (a new output inside an input folder: the next read of it reads the output).
bool lies_within(const std::filesystem::path& inner, const std::filesystem::path& outer);

}  // namespace anchorctx::core

// The --force rule (core/owned_folder.h): only a folder the project wrote is replaced; `.`,
// `..`, the root, the home folder, the current folder and its ancestors, inputs and folders
// holding inputs or unknown files are refused with the reason named.
#include "anchorctx/core/owned_folder.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "anchorctx/core/error.h"
#include "support/temp_dir.h"

namespace anchorctx::core {
namespace {

namespace fs = std::filesystem;
using anchorctx::test::TempDir;

OwnedFolderRule rule() {
  return {"test folder", {"meta.json", "a.bin"}, {"b.bin"}, {"sub"}, {}};
}

// The message of the Error `check` throws ("" when it throws none).
template <typename F>
std::string refusal(F check) {
  try {
    check();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string folder_refusal(const fs::path& target, std::vector<fs::path> inputs = {}) {
  return refusal([&] { check_replaceable_folder(target, rule(), inputs); });
}

// A folder of the rule's own files (what the writer left).
fs::path owned(const TempDir& tmp, const std::string& name) {
  tmp.write(name + "/meta.json", "{}");
  tmp.write(name + "/a.bin", "a");
  return tmp.path() / name;
}

// Runs `body` with the current folder set to `dir`, restoring it after.
template <typename F>
void in_folder(const fs::path& dir, F body) {
  const fs::path before = fs::current_path();
  fs::current_path(dir);
  try {
    body();
  } catch (...) {
    fs::current_path(before);
    throw;
  }
  fs::current_path(before);
}

TEST(OwnedFolder, ReplacesAFolderOfItsOwnFiles) {
  TempDir tmp;
  const fs::path dir = owned(tmp, "out");
  EXPECT_EQ(folder_refusal(dir), "");
  tmp.write("out/b.bin", "b");
  fs::create_directories(dir / "sub");
  tmp.write("out/sub/anything", "x");  // a listed sub-folder is ours as a whole
  EXPECT_EQ(folder_refusal(dir), "");
  EXPECT_EQ(folder_refusal(tmp.path().string() + "/out/"), "");  // a trailing separator
}

TEST(OwnedFolder, RefusesAFolderHoldingAnUnknownFile) {
  TempDir tmp;
  const fs::path dir = owned(tmp, "out");
  tmp.write("out/notes.txt", "mine");
  const std::string why = folder_refusal(dir);
  EXPECT_NE(why.find("holds 'notes.txt'"), std::string::npos) << why;
  EXPECT_NE(why.find(dir.string()), std::string::npos) << why;
}

TEST(OwnedFolder, RefusesWhatIsNotOneOfOurs) {
  TempDir tmp;
  tmp.write("partial/meta.json", "{}");  // a.bin missing
  EXPECT_NE(folder_refusal(tmp.path() / "partial").find("no 'a.bin'"), std::string::npos);
  fs::create_directories(tmp.path() / "empty");
  EXPECT_NE(folder_refusal(tmp.path() / "empty").find("no 'meta.json'"), std::string::npos);
  tmp.write("file", "x");
  EXPECT_NE(folder_refusal(tmp.path() / "file").find("not a folder"), std::string::npos);
  const fs::path dir = owned(tmp, "out");
  fs::create_directory_symlink(dir, tmp.path() / "link");
  EXPECT_NE(folder_refusal(tmp.path() / "link").find("symbolic link"), std::string::npos);
  fs::create_directories(tmp.path() / "out2");
  owned(tmp, "out2");
  tmp.write("out2/sub", "a file where a folder is allowed");
  EXPECT_NE(folder_refusal(tmp.path() / "out2").find("holds 'sub'"), std::string::npos);
  OwnedFolderRule picky = rule();
  picky.identify = [](const fs::path&) { return std::string("its meta.json is not ours"); };
  const std::string why = refusal([&] { check_replaceable_folder(owned(tmp, "out3"), picky, {}); });
  EXPECT_NE(why.find("its meta.json is not ours"), std::string::npos) << why;
}

TEST(OwnedFolder, RefusesTheCurrentAndParentFoldersWhateverTheyHold) {
  TempDir tmp;
  const fs::path dir = owned(tmp, "out");
  fs::create_directories(dir / "sub");
  in_folder(dir, [&] {
    for (const char* name : {".", "./", "..", "sub/..", "sub/../", "../out/."}) {
      const std::string why = folder_refusal(name);
      EXPECT_NE(why.find("current or a parent folder"), std::string::npos) << name << ": " << why;
    }
    // The current folder and its ancestors by their absolute names too.
    EXPECT_NE(folder_refusal(dir).find("holds the current folder"), std::string::npos);
    EXPECT_NE(folder_refusal(tmp.path()).find("holds the current folder"), std::string::npos);
  });
  EXPECT_NE(folder_refusal("/").find("the root folder"), std::string::npos);
  if (const char* home = std::getenv("HOME");
      home != nullptr && *home != '\0' && fs::is_directory(home)) {
    EXPECT_NE(folder_refusal(home).find("the home folder"), std::string::npos);
  }
}

TEST(OwnedFolder, RefusesAnInputOrAFolderHoldingOne) {
  TempDir tmp;
  const fs::path dir = owned(tmp, "out");
  fs::create_directories(dir / "sub");
  tmp.write("out/sub/corpus.jsonl", "{}");
  const std::string holds = folder_refusal(dir, {dir / "sub" / "corpus.jsonl"});
  EXPECT_NE(holds.find("holds the input"), std::string::npos) << holds;
  EXPECT_NE(holds.find("corpus.jsonl"), std::string::npos) << holds;
  // The same input through another spelling of its path.
  EXPECT_NE(folder_refusal(dir, {dir / "sub" / ".." / "sub" / "corpus.jsonl"}).find("holds"),
            std::string::npos);
  EXPECT_NE(folder_refusal(dir, {dir}).find("holds the input"), std::string::npos);
  EXPECT_NE(folder_refusal(dir / "sub", {dir}).find("inside the input"), std::string::npos);
  EXPECT_EQ(folder_refusal(dir, {tmp.path() / "elsewhere.jsonl"}), "");
}

TEST(OwnedFolder, FileReplacementNeedsOurFileAndNoInput) {
  TempDir tmp;
  const auto ours = [](const fs::path& p) {
    return anchorctx::test::read_file(p.string()) == "ours" ? std::string()
                                                            : std::string("not ours inside");
  };
  const fs::path file = tmp.write("model/out.bin", "ours");
  const auto file_refusal = [&](const fs::path& target, std::vector<fs::path> inputs) {
    return refusal([&] { check_replaceable_file(target, "test file", inputs, ours); });
  };
  EXPECT_EQ(file_refusal(file, {}), "");
  EXPECT_NE(file_refusal(file, {tmp.path() / "model"}).find("inside the input"), std::string::npos);
  EXPECT_NE(file_refusal(file, {file}).find("holds the input"), std::string::npos);
  const fs::path other = tmp.write("other.bin", "theirs");
  EXPECT_NE(file_refusal(other, {}).find("not ours inside"), std::string::npos);
  EXPECT_NE(file_refusal(tmp.path() / "model", {}).find("not a regular file"), std::string::npos);
}

}  // namespace
}  // namespace anchorctx::core

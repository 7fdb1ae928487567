// Setting an environment variable for a scope (the kernels read ANCHORCTX_ISA and
// ANCHORCTX_AMX on every call, so tests switch paths this way) and restoring what was there.
#pragma once

#include <cstdlib>
#include <optional>
#include <string>

namespace anchorctx::test {

class EnvOverride {
 public:
  EnvOverride(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) saved_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~EnvOverride() {
    if (saved_) {
      ::setenv(name_, saved_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  EnvOverride(const EnvOverride&) = delete;
  EnvOverride& operator=(const EnvOverride&) = delete;

 private:
  const char* name_;
  std::optional<std::string> saved_;
};

}  // namespace anchorctx::test

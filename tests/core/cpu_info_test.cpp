#include "anchorctx/core/cpu_info.h"

#include <cctype>
#include <fstream>
#include <map>
#include <string>

#include <gtest/gtest.h>

namespace anchorctx::core {
namespace {

// The first processor's "key : value" lines of /proc/cpuinfo (Linux on x86), empty elsewhere.
std::map<std::string, std::string> proc_cpuinfo() {
  std::map<std::string, std::string> fields;
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) break;  // the end of the first processor's block
    const std::size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    key.erase(key.find_last_not_of(" \t") + 1);
    std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    fields.emplace(key, value);
  }
  return fields;
}

TEST(CpuInfo, AgreesWithTheKernelsView) {
  // Linux decodes CPUID's family, model and stepping itself (arch/x86/lib/cpu.c): the same
  // numbers from an independent decoder.
  const auto fields = proc_cpuinfo();
  if (!fields.contains("vendor_id")) GTEST_SKIP() << "no x86 /proc/cpuinfo here";
  const CpuInfo& cpu = cpu_info();
  EXPECT_EQ(cpu.vendor, fields.at("vendor_id"));
  EXPECT_EQ(cpu.family, std::stoi(fields.at("cpu family")));
  EXPECT_EQ(cpu.model, std::stoi(fields.at("model")));
  // Some kernels print "stepping : unknown".
  if (fields.contains("stepping") && !fields.at("stepping").empty() &&
      std::isdigit(static_cast<unsigned char>(fields.at("stepping")[0]))) {
    EXPECT_EQ(cpu.stepping, std::stoi(fields.at("stepping")));
  }
  if (fields.contains("model name")) {
    std::string name = fields.at("model name");
    name.erase(name.find_last_not_of(' ') + 1);
    EXPECT_EQ(cpu.brand, name);
  }
  if (fields.contains("flags")) {
    const std::string flags = " " + fields.at("flags") + " ";
    EXPECT_EQ(cpu.avx512_bf16, flags.find(" avx512_bf16 ") != std::string::npos);
    EXPECT_EQ(cpu.amx_bf16, flags.find(" amx_bf16 ") != std::string::npos &&
                                flags.find(" amx_tile ") != std::string::npos);
  }
}

TEST(CpuInfo, DescribeNamesFamilyAndModel) {
  CpuInfo cpu;
  cpu.vendor = "AuthenticAMD";
  cpu.brand = "AMD EPYC 9R14";
  cpu.family = 25;
  cpu.model = 17;
  cpu.stepping = 1;
  cpu.avx512_bf16 = true;
  EXPECT_EQ(describe(cpu),
            "AMD EPYC 9R14 (AuthenticAMD family 25 model 17 stepping 1; AVX512_BF16, no AMX)");
  EXPECT_EQ(describe(CpuInfo{}), "unknown CPU (no CPUID)");
}

}  // namespace
}  // namespace anchorctx::core

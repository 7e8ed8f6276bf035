// The GPU roofline's part table (ops/roofline.h GpuPartFor): H100 SXM, H100 PCIe,
// H100 NVL and H200 told apart from the driver's name, SM count and memory, each with its own
// dense bf16 peak and HBM bandwidth; an unknown part is an error naming what was seen.
#include "ops/roofline.h"

#include "gtest/gtest.h"

namespace loom::bench {
namespace {

constexpr size_t kGiB = size_t{1} << 30;

TEST(GpuPartFor, TellsTheHopperPartsApart) {
  struct Case {
    const char* name;
    int sms;
    size_t mem;
    const char* part;
    double bf16, hbm;
  } cases[] = {
      {"NVIDIA H100 80GB HBM3", 132, 80 * kGiB, "H100 SXM", 989.4e12, 3.35e12},
      {"NVIDIA H100 PCIe", 114, 80 * kGiB, "H100 PCIe", 756.5e12, 2.0e12},
      // A PCIe card whose name does not say so: 114 SMs decide.
      {"NVIDIA H100", 114, 80 * kGiB, "H100 PCIe", 756.5e12, 2.0e12},
      {"NVIDIA H100 NVL", 132, 94 * kGiB, "H100 NVL", 835e12, 3.9e12},
      {"NVIDIA H100", 132, 94 * kGiB, "H100 NVL", 835e12, 3.9e12},  // by its 94 GB
      {"NVIDIA H200", 132, 141 * kGiB, "H200 SXM", 989.4e12, 4.8e12},
      {"NVIDIA H200 NVL", 132, 141 * kGiB, "H200 NVL", 835e12, 4.8e12},
  };
  for (const Case& c : cases) {
    auto p = GpuPartFor(c.name, c.sms, c.mem);
    ASSERT_TRUE(p.ok()) << c.name << ": " << p.status();
    EXPECT_EQ(p->name, c.part) << c.name;
    EXPECT_DOUBLE_EQ(p->bf16_flops, c.bf16) << c.name;
    EXPECT_DOUBLE_EQ(p->hbm_bytes_per_s, c.hbm) << c.name;
    EXPECT_GT(p->tf32_flops, p->fp32_flops) << c.name;
    EXPECT_LT(p->tf32_flops, p->bf16_flops) << c.name;
  }
  // The H100 SXM and PCIe, the H100 and the H200: different bandwidths.
  EXPECT_NE(GpuPartFor("NVIDIA H100 80GB HBM3", 132, 80 * kGiB)->hbm_bytes_per_s,
            GpuPartFor("NVIDIA H200", 132, 141 * kGiB)->hbm_bytes_per_s);
}

TEST(GpuPartFor, AnUnknownPartIsAnErrorNamingIt) {
  auto p = GpuPartFor("NVIDIA A100-SXM4-80GB", 108, 80 * kGiB);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(p.status().message().find("NVIDIA A100-SXM4-80GB (108 SMs, 80 GiB)"), std::string::npos)
      << p.status();
  EXPECT_NE(p.status().message().find("ops/roofline.cc"), std::string::npos);
  // An H100 of an SM count no H100 has is not guessed at.
  EXPECT_FALSE(GpuPartFor("NVIDIA H100 something", 120, 80 * kGiB).ok());
}

}  // namespace
}  // namespace loom::bench

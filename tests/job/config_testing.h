// Shared by the job-config tests (config_test: validation, derived numbers, the config check
// command; config_text_test: parsing, overrides, defaults): a small valid job and helpers.
#pragma once

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "job/config.h"

namespace loom {
namespace testing_config {

// EXPECT_CONTAINS(text, piece): the failure shows the whole text.
inline ::testing::AssertionResult AssertContains(const char* text_expr, const char* piece_expr,
                                                 const std::string& text,
                                                 const std::string& piece) {
  if (absl::StrContains(text, piece)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << text_expr << " does not contain " << piece_expr << " (\"" << piece << "\"):\n"
         << text;
}
#define EXPECT_CONTAINS(text, piece) EXPECT_PRED_FORMAT2(AssertContains, text, piece)

inline std::string SourceDir() {
  const char* env = std::getenv("LOOM_SOURCE_DIR");
  return env != nullptr && *env != '\0' ? env : LOOM_SOURCE_DIR;
}

// A valid small job as a file would give it (no defaults applied), parallel settings left out.
inline JobConfig Base() {
  auto c = ParseJobConfigText(
      R"pb(
        model { family: GPT2 layers: 4 heads: 4 hidden: 64 vocab: 257 max_seq: 64 }
        parallel { micro_batch_size: 2 global_batch_size: 8 }
        optimizer { lr: 0.001 }
        lr_schedule { warmup_steps: 2 min_lr: 0.0001 total_steps: 20 }
        data { train: "data/demo/train_*.bin" val: "data/demo/val_*.bin" }
      )pb",
      "base");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

inline JobConfig With(const std::vector<std::string>& sets) {
  JobConfig c = Base();
  for (const auto& s : sets) {
    absl::Status st = ApplyOverride(&c, s);
    EXPECT_TRUE(st.ok()) << st;
  }
  ApplyDefaults(&c);
  return c;
}

}  // namespace testing_config
}  // namespace loom

// Reading the tokenizer fixtures of tools/gen_tokenizer_fixtures.py: NAME.expected.tsv holds
// per line the text as hex UTF-8, a tab, and the reference library's ids.
#pragma once

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace loom::testing {

inline std::string FixtureDir() {
  return std::string(LOOM_SOURCE_DIR) + "/tests/fixtures/tokenizer";
}

struct TokenizerCase {
  std::string text;
  std::vector<int32_t> ids;
};

inline std::vector<TokenizerCase> ReadExpected(const std::string& name) {
  std::vector<TokenizerCase> cases;
  std::ifstream in(FixtureDir() + "/" + name);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> cols = absl::StrSplit(line, '\t');
    TokenizerCase c;
    for (size_t i = 0; i + 1 < cols[0].size(); i += 2) {
      c.text.push_back(static_cast<char>(std::stoi(cols[0].substr(i, 2), nullptr, 16)));
    }
    if (cols.size() > 1) {
      for (const auto& id : absl::StrSplit(cols[1], ' ', absl::SkipEmpty())) {
        int32_t v = -1;
        if (absl::SimpleAtoi(id, &v)) c.ids.push_back(v);
      }
    }
    cases.push_back(std::move(c));
  }
  return cases;
}

}  // namespace loom::testing

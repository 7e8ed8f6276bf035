// A thin wrapper around libsentencepiece's SentencePieceProcessor with only standard types in
// its interface. libsentencepiece's header declares absl::string_view as std::string_view,
// which clashes with Debian's Abseil (its own string_view class), so that header is included
// in sentencepiece_lib.cc alone, which includes no Abseil header. Built only with
// LOOM_WITH_SENTENCEPIECE.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace loom::spm {

class Processor {
 public:
  Processor();
  ~Processor();
  // false with the library's message in *error when `bytes` is no model.
  bool Load(const std::string& bytes, std::string* error);
  bool Encode(std::string_view text, std::vector<int>* ids) const;
  bool Decode(const std::vector<int>& ids, std::string* text, std::string* error) const;
  int Size() const;
  int EosId() const;
  int BosId() const;
  bool IsControl(int id) const;
  std::string IdToPiece(int id) const;
  int PieceToId(std::string_view piece) const;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

}  // namespace loom::spm

#ifdef LOOM_WITH_SENTENCEPIECE
#include "data/sentencepiece_lib.h"

#include <sentencepiece_processor.h>

namespace loom::spm {

Processor::Processor() : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}
Processor::~Processor() = default;

bool Processor::Load(const std::string& bytes, std::string* error) {
  const auto status = sp_->LoadFromSerializedProto(bytes);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}
bool Processor::Encode(std::string_view text, std::vector<int>* ids) const {
  return sp_->Encode(text, ids).ok();
}
bool Processor::Decode(const std::vector<int>& ids, std::string* text, std::string* error) const {
  const auto status = sp_->Decode(ids, text);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}
int Processor::Size() const { return sp_->GetPieceSize(); }
int Processor::EosId() const { return sp_->eos_id(); }
int Processor::BosId() const { return sp_->bos_id(); }
bool Processor::IsControl(int id) const { return sp_->IsControl(id); }
std::string Processor::IdToPiece(int id) const { return sp_->IdToPiece(id); }
int Processor::PieceToId(std::string_view piece) const { return sp_->PieceToId(piece); }

}  // namespace loom::spm
#endif  // LOOM_WITH_SENTENCEPIECE

// libloom_sentencepiece.so: see data/sentencepiece_shim.h. Built only with libsentencepiece;
// includes no Abseil header (libsentencepiece's header declares its own absl::string_view).
#include "data/sentencepiece_shim.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace {

sentencepiece::SentencePieceProcessor* P(void* p) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(p);
}

long CopyOut(const std::string& s, char* out, size_t cap) {
  std::memcpy(out, s.data(), std::min(cap, s.size()));
  return static_cast<long>(s.size());
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) void* loom_spm_load(const char* bytes, size_t size,
                                                           char* err, size_t err_cap) {
  auto* sp = new sentencepiece::SentencePieceProcessor();
  const auto status = sp->LoadFromSerializedProto(std::string_view(bytes, size));
  if (!status.ok()) {
    const std::string message = status.ToString();
    if (err_cap > 0) {
      const size_t n = std::min(err_cap - 1, message.size());
      std::memcpy(err, message.data(), n);
      err[n] = '\0';
    }
    delete sp;
    return nullptr;
  }
  return sp;
}

__attribute__((visibility("default"))) void loom_spm_free(void* p) { delete P(p); }

__attribute__((visibility("default"))) long loom_spm_encode(void* p, const char* text, size_t size,
                                                            int* ids, size_t cap) {
  std::vector<int> v;
  if (!P(p)->Encode(std::string_view(text, size), &v).ok()) return -1;
  std::copy_n(v.begin(), std::min(cap, v.size()), ids);
  return static_cast<long>(v.size());
}

__attribute__((visibility("default"))) long loom_spm_decode(void* p, const int* ids, size_t count,
                                                            char* out, size_t cap) {
  std::string text;
  if (!P(p)->Decode(std::vector<int>(ids, ids + count), &text).ok()) return -1;
  return CopyOut(text, out, cap);
}

__attribute__((visibility("default"))) long loom_spm_id_to_piece(void* p, int id, char* out,
                                                                 size_t cap) {
  return CopyOut(P(p)->IdToPiece(id), out, cap);
}

__attribute__((visibility("default"))) int loom_spm_piece_to_id(void* p, const char* piece,
                                                                size_t size) {
  return P(p)->PieceToId(std::string_view(piece, size));
}

__attribute__((visibility("default"))) int loom_spm_size(void* p) { return P(p)->GetPieceSize(); }
__attribute__((visibility("default"))) int loom_spm_eos(void* p) { return P(p)->eos_id(); }
__attribute__((visibility("default"))) int loom_spm_bos(void* p) { return P(p)->bos_id(); }
__attribute__((visibility("default"))) int loom_spm_is_control(void* p, int id) {
  return P(p)->IsControl(id) ? 1 : 0;
}

}  // extern "C"

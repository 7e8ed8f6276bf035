// The C interface of libloom_sentencepiece.so, the shim loom loads to run libsentencepiece.
//
// Why a shim: Debian's libsentencepiece.so carries its own copy of protobuf-lite 3.14 and
// exports it, while loom links the system protobuf (3.21). Linked into loom directly, one of
// the two runtimes answers for both and the process aborts on protobuf's version check (or
// worse, loom's own protos run on the wrong runtime). So libsentencepiece is linked only into
// this shim, which loom opens with dlopen(RTLD_LOCAL | RTLD_DEEPBIND): the shim and
// libsentencepiece bind to their own symbols first and nothing leaks into loom's scope. Only
// plain C types cross the boundary.
#pragma once

#include <stddef.h>

extern "C" {

// A processor for the serialized model `bytes`, or null with a message in err[0..err_cap).
void* loom_spm_load(const char* bytes, size_t size, char* err, size_t err_cap);
void loom_spm_free(void* processor);
// The ids of `text`: returns their count (writing at most `cap` into `ids`), or -1 when the
// library refuses the text.
long loom_spm_encode(void* processor, const char* text, size_t size, int* ids, size_t cap);
// The text of `ids`: returns its length (writing at most `cap` bytes), or -1 on failure.
long loom_spm_decode(void* processor, const int* ids, size_t count, char* out, size_t cap);
// The piece of `id`: returns its length (writing at most `cap` bytes).
long loom_spm_id_to_piece(void* processor, int id, char* out, size_t cap);
// PieceToId (unk id when there is no such piece).
int loom_spm_piece_to_id(void* processor, const char* piece, size_t size);
int loom_spm_size(void* processor);
int loom_spm_eos(void* processor);
int loom_spm_bos(void* processor);
int loom_spm_is_control(void* processor, int id);

}  // extern "C"

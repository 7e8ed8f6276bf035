// LOOM_SIMD_CLONES: compile a hot CPU loop function for AVX-512, AVX2 and the baseline x86-64
// ISA, the dynamic loader picking the best the CPU has (GCC function multiversioning). loom is
// built for baseline x86-64 so that one binary runs anywhere; without this the memory-bound
// row loops of the norms and softmaxes run on 128-bit SSE. GCC on x86-64 only (an ELF ifunc);
// elsewhere the macro is empty. Results may differ in the last bits between ISAs (vector
// widths change the order of sums), never between runs on one machine.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LOOM_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define LOOM_SIMD_CLONES
#endif

// For the loop bodies a LOOM_SIMD_CLONES function calls: they must be inlined into each clone
// to be compiled for its ISA (an out-of-line copy is baseline code).
#if defined(__GNUC__)
#define LOOM_SIMD_INLINE inline __attribute__((always_inline))
#else
#define LOOM_SIMD_INLINE inline
#endif

/*
 * fuzz.h — one source per fuzz target. Built with -DFUZZ_LIBFUZZER it is a libFuzzer target
 * (make fuzz); otherwise the function is named fuzz_NAME and the test runner replays the
 * committed corpus in fuzz/corpus/NAME through it (make test, make asan).
 */
#ifndef FACTUM_FUZZ_H
#define FACTUM_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#ifdef FUZZ_LIBFUZZER
#define FUZZ_TARGET(name) int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
#else
#define FUZZ_TARGET(name)                                                                                              \
    int fuzz_##name(const uint8_t *data, size_t size);                                                                 \
    int fuzz_##name(const uint8_t *data, size_t size)
#endif

#endif

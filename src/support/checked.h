// Overflow-checked int64 arithmetic for sizes, strides and byte extents: the
// one definition every layer uses (validation, caches, masks, distributed).
#pragma once

#include <cstdint>

namespace goldilocks::support {

// *out = a * b (a + b); false, with *out unspecified, when it overflows int64.
inline bool checked_mul(int64_t a, int64_t b, int64_t* out) { return !__builtin_mul_overflow(a, b, out); }
inline bool checked_add(int64_t a, int64_t b, int64_t* out) { return !__builtin_add_overflow(a, b, out); }

}  // namespace goldilocks::support

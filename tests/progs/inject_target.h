// SPDX-License-Identifier: Apache-2.0
// The computation of ooh-inject-target, shared with the tests that check
// that injecting into it left the computation intact.
#pragma once

#include <cstdint>

namespace ooh::testprog {

inline uint64_t step(uint64_t acc, uint64_t i)
{
    acc ^= i + 0x9e3779b97f4a7c15ull + (acc << 6) + (acc >> 2);
    return acc * 6364136223846793005ull + 1442695040888963407ull;
}

inline uint64_t spinResult(uint64_t seed, uint64_t n)
{
    uint64_t acc = seed;
    for (uint64_t i = 0; i < n; ++i)
        acc = step(acc, i);
    return acc;
}

} // namespace ooh::testprog

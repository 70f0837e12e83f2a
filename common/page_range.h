// SPDX-License-Identifier: Apache-2.0
// PageRange: a half-open range of byte addresses reported dirty, and the
// normalisation every backend's output goes through before it is sent.
#pragma once

#include <cstdint>
#include <vector>

namespace ooh {

struct PageRange {
    uint64_t start = 0;
    uint64_t end = 0;       // exclusive
    bool wholesale = false; // reported as a whole: tracking could not be exact

    uint64_t bytes() const { return end - start; }
    bool operator==(const PageRange &) const = default;
};

// Sorts, drops empty ranges, and merges overlapping or adjacent ranges that
// have the same wholesale flag. Where an exact range overlaps a wholesale one,
// the overlap is kept as wholesale, so no byte is ever dropped and the
// result's ranges never overlap.
std::vector<PageRange> normalizeRanges(std::vector<PageRange> ranges);

uint64_t countPages(const std::vector<PageRange> &ranges, uint64_t page_size);

} // namespace ooh

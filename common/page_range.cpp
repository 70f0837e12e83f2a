// SPDX-License-Identifier: Apache-2.0
// Implementation of common/page_range.h.
#include "page_range.h"

#include <algorithm>
#include <map>

namespace ooh {

std::vector<PageRange> normalizeRanges(std::vector<PageRange> ranges)
{
    std::erase_if(ranges, [](const PageRange &r) { return r.end <= r.start; });
    if (ranges.empty())
        return ranges;

    // Fast path, the common case (one scan's output plus a few wholesale
    // ranges elsewhere): once sorted, nothing overlaps, so merging adjacent
    // ranges with the same flag is linear.
    auto by_start = [](const PageRange &a, const PageRange &b) { return a.start < b.start; };
    if (!std::is_sorted(ranges.begin(), ranges.end(), by_start))
        std::sort(ranges.begin(), ranges.end(), by_start);
    bool overlaps = false;
    for (size_t i = 1; i < ranges.size() && !overlaps; ++i)
        overlaps = ranges[i].start < ranges[i - 1].end;
    if (!overlaps) {
        std::vector<PageRange> out;
        out.reserve(ranges.size());
        for (const auto &r : ranges) {
            if (!out.empty() && out.back().end == r.start && out.back().wholesale == r.wholesale)
                out.back().end = r.end;
            else
                out.push_back(r);
        }
        return out;
    }

    // Sweep over boundaries: at each point count covering exact and
    // wholesale ranges; the output flag is "any wholesale range covers it".
    std::map<uint64_t, std::pair<int, int>> delta; // addr -> (exact, wholesale)
    for (const auto &r : ranges) {
        auto &s = delta[r.start];
        auto &e = delta[r.end];
        (r.wholesale ? s.second : s.first) += 1;
        (r.wholesale ? e.second : e.first) -= 1;
    }

    std::vector<PageRange> out;
    int exact = 0, whole = 0;
    uint64_t prev = 0;
    for (const auto &[addr, d] : delta) {
        if (exact + whole > 0 && addr > prev) {
            bool w = whole > 0;
            if (!out.empty() && out.back().end == prev && out.back().wholesale == w)
                out.back().end = addr;
            else
                out.push_back({prev, addr, w});
        }
        exact += d.first;
        whole += d.second;
        prev = addr;
    }
    return out;
}

uint64_t countPages(const std::vector<PageRange> &ranges, uint64_t page_size)
{
    uint64_t pages = 0;
    for (const auto &r : ranges)
        pages += (r.end - r.start + page_size - 1) / page_size;
    return pages;
}

} // namespace ooh

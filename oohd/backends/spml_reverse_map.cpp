// SPDX-License-Identifier: Apache-2.0
// Implementation of oohd/backends/spml_reverse_map.h.
#include "spml_reverse_map.h"

#include <algorithm>

namespace ooh {

SpmlReverseMap::FrameIndex SpmlReverseMap::buildIndex(const std::vector<PagemapPage> &pages)
{
    FrameIndex index;
    index.reserve(pages.size());
    for (const PagemapPage &p : pages)
        if (p.entry & kPresent)
            index.emplace_back(p.entry & kPfnMask, p.va);
    std::sort(index.begin(), index.end());
    return index;
}

void SpmlReverseMap::lookup(const FrameIndex &index, uint64_t pfn, std::vector<uint64_t> &vas)
{
    auto it = std::lower_bound(index.begin(), index.end(), std::make_pair(pfn, uint64_t{0}));
    for (; it != index.end() && it->first == pfn; ++it)
        vas.push_back(it->second);
}

void SpmlReverseMap::reset(std::vector<PagemapPage> snapshot)
{
    prev_ = std::move(snapshot);
    prev_index_ = buildIndex(prev_);
}

std::vector<PageRange> SpmlReverseMap::update(std::span<const uint64_t> gpas,
                                              std::vector<PagemapPage> now, uint64_t page_size,
                                              bool appeared)
{
    FrameIndex now_index = buildIndex(now);
    std::vector<uint64_t> dirty;

    int shift = __builtin_ctzll(page_size);
    for (uint64_t gpa : gpas) {
        uint64_t pfn = gpa >> shift;
        lookup(now_index, pfn, dirty);
        lookup(prev_index_, pfn, dirty);
    }

    // Pages whose location changed, appeared or went away since the
    // previous snapshot (both are sorted by va).
    auto location = [](const PagemapPage &p) { return pagemapLocation(p.entry); };
    size_t i = 0, j = 0;
    while (i < prev_.size() || j < now.size()) {
        if (j == now.size() || (i < prev_.size() && prev_[i].va < now[j].va)) {
            if (location(prev_[i]))
                dirty.push_back(prev_[i].va);
            ++i;
        } else if (i == prev_.size() || now[j].va < prev_[i].va) {
            if (appeared && location(now[j]) && !(now[j].entry & kFile))
                dirty.push_back(now[j].va);
            ++j;
        } else {
            if (location(prev_[i]) != location(now[j]))
                dirty.push_back(now[j].va);
            ++i;
            ++j;
        }
    }

    std::sort(dirty.begin(), dirty.end());
    dirty.erase(std::unique(dirty.begin(), dirty.end()), dirty.end());
    std::vector<PageRange> out;
    for (uint64_t va : dirty) {
        if (!out.empty() && out.back().end == va)
            out.back().end = va + page_size;
        else
            out.push_back({va, va + page_size, false});
    }

    prev_ = std::move(now);
    prev_index_ = std::move(now_index);
    return out;
}

} // namespace ooh

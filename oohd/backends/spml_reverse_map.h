// SPDX-License-Identifier: Apache-2.0
// SpmlReverseMap: turns the guest-physical frames that Shadow PML logged back
// into the target's virtual pages, with a frame index sorted by PFN (the
// research prototype searched a PFN array linearly per logged frame).
//
// Frames move under a process (COW, migration, THP collapse, swap), so a
// logged frame is looked up in both the previous and the current snapshot of
// the target's pagemap, and every virtual page whose frame or swap slot
// changed between the two snapshots is reported too: a page written and then
// moved is never lost.
#pragma once

#include "page_range.h"

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace ooh {

// One virtual page of the target with its raw /proc/PID/pagemap entry.
struct PagemapPage {
    uint64_t va = 0;
    uint64_t entry = 0;
};

class SpmlReverseMap {
public:
    static constexpr uint64_t kPresent = 1ull << 63;
    static constexpr uint64_t kSwapped = 1ull << 62;
    static constexpr uint64_t kFile = 1ull << 61; // page cache or shared anonymous
    static constexpr uint64_t kPfnMask = (1ull << 55) - 1;

    // Installs the first snapshot (pages sorted by va; only present or
    // swapped pages matter).
    void reset(std::vector<PagemapPage> snapshot);

    // Dirty pages for the logged frames `gpas` (byte addresses), given the
    // snapshot taken after them; `now` becomes the previous snapshot. Pages
    // that went away or moved (frame or swap slot changed) are always
    // reported: a discarded page changed without a write, and khugepaged
    // may refill it; pages that appeared only with `appeared` (SPML: a page
    // written and moved within one epoch was logged under a frame that no
    // snapshot shows), and then not file pages: a private mapping's file
    // page holds the file's contents (a write through the mapping copies it
    // into an anonymous page), and shared mappings are reported whole.
    std::vector<PageRange> update(std::span<const uint64_t> gpas, std::vector<PagemapPage> now,
                                  uint64_t page_size, bool appeared = true);

    size_t pages() const { return prev_.size(); }

private:
    using FrameIndex = std::vector<std::pair<uint64_t, uint64_t>>; // (pfn, va), sorted
    static FrameIndex buildIndex(const std::vector<PagemapPage> &pages);
    static void lookup(const FrameIndex &index, uint64_t pfn, std::vector<uint64_t> &vas);

    std::vector<PagemapPage> prev_;
    FrameIndex prev_index_;
};

// What identifies where a page lives: its frame or swap slot, and whether
// it is present or swapped (soft-dirty and exclusive bits are ignored).
inline uint64_t pagemapLocation(uint64_t entry)
{
    return entry & (SpmlReverseMap::kPfnMask | SpmlReverseMap::kPresent | SpmlReverseMap::kSwapped);
}

} // namespace ooh

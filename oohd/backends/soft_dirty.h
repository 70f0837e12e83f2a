// SPDX-License-Identifier: Apache-2.0
// The soft-dirty backend: clear_refs "4" to arm, then the soft-dirty bit of
// each page (PAGEMAP_SCAN's PAGE_IS_SOFT_DIRTY on Linux >= 6.8, pagemap bit
// 55 otherwise). Needs CONFIG_MEM_SOFT_DIRTY, which some kernels lack.
#pragma once

#include "backend.h"
#include "proc_maps.h"

#include <cstdint>
#include <span>
#include <vector>

namespace ooh {

class SoftDirtyBackend final : public Backend {
public:
    std::string_view name() const override { return "soft-dirty"; }
    BackendProbe probe() override;
    Result<std::unique_ptr<Tracker>> track(const Target &target) override;

private:
    // What the last probe found.
    bool available_ = false;
    bool pagemap_scan_ = false; // PAGEMAP_SCAN knows PAGE_IS_SOFT_DIRTY
};

namespace soft_dirty {

constexpr uint64_t kPagemapSoftDirty = 1ull << 55;
constexpr uint64_t kPagemapPresentOrSwapped = 3ull << 62;

// Appends the pages of [start, start + entries.size() pages) whose pagemap
// entry has the soft-dirty bit, as merged ranges.
void appendDirtyRanges(uint64_t start, std::span<const uint64_t> entries, uint64_t page_size,
                       std::vector<PageRange> &out);

// Pages present (or swapped) in `before` and neither in `now` (both sorted
// virtual page addresses): discarded pages, whose content changed to zero
// without a write, so no soft-dirty bit tells about them.
void appendVanishedPages(const std::vector<uint64_t> &before, const std::vector<uint64_t> &now,
                         uint64_t page_size, std::vector<PageRange> &out);

// Ranges of `now` that no mapping of `before` covered with the same
// backing (the same inode, and for a file the same file offset at each
// address): mappings created, moved or grown since, and what replaced a
// mapping of something else, whose pages must be reported whole (a new VMA
// reads wholly soft-dirty anyway, but PAGEMAP_SCAN does not report its
// holes). A mapping merely split, merged or grown keeps its page table
// entries and their soft-dirty bits where it was; pages it lost are
// reported by appendVanishedPages().
std::vector<PageRange> newMappingRanges(const std::vector<MapEntry> &before,
                                        const std::vector<MapEntry> &now);

} // namespace soft_dirty
} // namespace ooh

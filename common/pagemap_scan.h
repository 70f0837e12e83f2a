// SPDX-License-Identifier: Apache-2.0
// A loop around the PAGEMAP_SCAN ioctl (Linux >= 6.7): one call walks until
// its output vector is full; this restarts it at walk_end until the whole
// range has been walked, handing every region to the caller.
#pragma once

#include "page_range.h"
#include "result.h"

#include <cstdint>
#include <functional>
#include <vector>

namespace ooh {

struct PagemapScanQuery {
    uint64_t start = 0;
    uint64_t end = 0;
    uint64_t flags = 0; // PM_SCAN_*
    uint64_t category_inverted = 0;
    uint64_t category_mask = 0;
    uint64_t category_anyof_mask = 0;
    uint64_t return_mask = 0;
};

class PagemapScanner {
public:
    // `capacity`: regions per ioctl call.
    explicit PagemapScanner(size_t capacity = 4096);

    // Calls `sink(start, end, categories)` for each region, in address order.
    // pagemap_fd: an open /proc/PID/pagemap.
    Result<void> scan(int pagemap_fd, const PagemapScanQuery &query,
                      const std::function<void(uint64_t, uint64_t, uint64_t)> &sink);

    // Convenience: appends the regions to `out` with the given flag.
    Result<void> scanInto(int pagemap_fd, const PagemapScanQuery &query,
                          std::vector<PageRange> &out, bool wholesale = false);

    uint64_t ioctlCalls() const { return calls_; }

private:
    std::vector<uint64_t> buffer_; // page_region triples
    uint64_t calls_ = 0;
};

// The highest user address PAGEMAP_SCAN accepts as `end` on this machine:
// the kernel's limit of user addresses (x86_64: 2^47 - 4096 with 4-level
// page tables, 2^56 - 4096 with 5-level; arm64: 2^48 or 2^52). Probed once;
// without PAGEMAP_SCAN, the address space this process's mappings lie in.
uint64_t userAddressLimit();

} // namespace ooh

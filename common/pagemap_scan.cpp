// SPDX-License-Identifier: Apache-2.0
// Implementation of pagemap_scan.h.
#include "pagemap_scan.h"

#include "compat/linux_mm.h"

#include <fcntl.h>
#include <string>

namespace ooh {

PagemapScanner::PagemapScanner(size_t capacity) : buffer_(capacity * 3) {}

Result<void> PagemapScanner::scan(int fd, const PagemapScanQuery &q,
                                  const std::function<void(uint64_t, uint64_t, uint64_t)> &sink)
{
    static_assert(sizeof(struct page_region) == 3 * sizeof(uint64_t));
    uint64_t start = q.start;
    while (start < q.end) {
        struct pm_scan_arg arg = {};
        arg.size = sizeof(arg);
        arg.flags = q.flags;
        arg.start = start;
        arg.end = q.end;
        arg.vec = reinterpret_cast<uint64_t>(buffer_.data());
        arg.vec_len = buffer_.size() / 3;
        arg.category_inverted = q.category_inverted;
        arg.category_mask = q.category_mask;
        arg.category_anyof_mask = q.category_anyof_mask;
        arg.return_mask = q.return_mask;
        ++calls_;
        long n = ::ioctl(fd, PAGEMAP_SCAN, &arg);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return Error::fromErrno(errno, "PAGEMAP_SCAN [0x" + std::to_string(start) + ", ...)");
        }
        auto *regions = reinterpret_cast<struct page_region *>(buffer_.data());
        for (long i = 0; i < n; ++i)
            sink(regions[i].start, regions[i].end, regions[i].categories);
        if (arg.walk_end <= start)
            return makeError(EPROTO, "PAGEMAP_SCAN made no progress");
        start = arg.walk_end;
    }
    return {};
}

Result<void> PagemapScanner::scanInto(int fd, const PagemapScanQuery &q,
                                      std::vector<PageRange> &out, bool wholesale)
{
    return scan(fd, q, [&](uint64_t s, uint64_t e, uint64_t) {
        if (!out.empty() && out.back().end == s && out.back().wholesale == wholesale)
            out.back().end = e;
        else
            out.push_back({s, e, wholesale});
    });
}

uint64_t userAddressLimit()
{
    static const uint64_t limit = [] {
        int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        uint64_t lim = (1ULL << 47) - 4096;
        if (fd < 0)
            return lim;
        // Ask for 56-bit; EFAULT means a 47-bit address space.
        struct pm_scan_arg arg = {};
        struct page_region r;
        arg.size = sizeof(arg);
        arg.start = 0;
        arg.end = (1ULL << 56) - 4096;
        arg.vec = reinterpret_cast<uint64_t>(&r);
        arg.vec_len = 1;
        arg.max_pages = 1;
        arg.category_mask = PAGE_IS_PRESENT;
        arg.return_mask = PAGE_IS_PRESENT;
        if (::ioctl(fd, PAGEMAP_SCAN, &arg) >= 0)
            lim = (1ULL << 56) - 4096;
        ::close(fd);
        return lim;
    }();
    return limit;
}

} // namespace ooh

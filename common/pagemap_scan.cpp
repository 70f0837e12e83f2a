// SPDX-License-Identifier: Apache-2.0
// Implementation of pagemap_scan.h.
#include "pagemap_scan.h"

#include "compat/linux_mm.h"

#include <algorithm>
#include <bit>
#include <fcntl.h>
#include <fstream>
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

namespace {

// The top of the highest mapping of this process (but the vsyscall page,
// which x86 puts in the kernel's half), rounded up to a power of two: the
// size of the address space its stack was placed in.
uint64_t addressSpaceOfMappings()
{
    std::ifstream maps("/proc/self/maps");
    std::string line;
    uint64_t top = 0;
    while (std::getline(maps, line)) {
        if (line.find("[vsyscall]") != std::string::npos)
            continue;
        auto dash = line.find('-');
        if (dash == std::string::npos)
            continue;
        top = std::max<uint64_t>(top, std::stoull(line.substr(dash + 1), nullptr, 16));
    }
    return top ? std::bit_ceil(top) : 1ULL << 47;
}

} // namespace

uint64_t userAddressLimit()
{
    static const uint64_t limit = [] {
        const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
        // PAGEMAP_SCAN refuses (EFAULT) an end above the kernel's
        // TASK_SIZE_MAX: find the highest end it takes. Bits 56 and up are
        // address tags on arm64 (the kernel strips them) and hold no user
        // address anywhere, so the search stays below 1 << 56.
        uint64_t lo = 0, hi = 1ULL << 56; // lo: taken (0: not known), hi: refused
        int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            auto taken = [&](uint64_t end) {
                struct pm_scan_arg arg = {};
                struct page_region r;
                arg.size = sizeof(arg);
                arg.start = end - page;
                arg.end = end;
                arg.vec = reinterpret_cast<uint64_t>(&r);
                arg.vec_len = 1;
                arg.max_pages = 1;
                arg.category_mask = PAGE_IS_PRESENT;
                arg.return_mask = PAGE_IS_PRESENT;
                return ::ioctl(fd, PAGEMAP_SCAN, &arg) >= 0;
            };
            if (taken(hi)) {
                lo = hi;
            } else if (taken(page)) {
                lo = page;
                while (hi - lo > page) {
                    uint64_t mid = lo + ((hi - lo) / 2 & ~(page - 1));
                    (taken(mid) ? lo : hi) = mid;
                }
            }
            ::close(fd);
        }
        // No PAGEMAP_SCAN (Linux < 6.7): what this process's mappings show.
        return lo ? lo : addressSpaceOfMappings();
    }();
    return limit;
}

} // namespace ooh

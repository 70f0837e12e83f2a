// SPDX-License-Identifier: Apache-2.0
// Implementation of uffd_wp_scan.h.
#include "uffd_wp_scan.h"

#include "compat/linux_mm.h"

#include <cerrno>
#include <iterator>
#include <sys/ioctl.h>
#include <unistd.h>

namespace ooh {

namespace {

// Written, and present or swapped, protected again as they are read. Holes
// are left out: the kernel reads an unpopulated PTE of a
// uffd-wp VMA as written (and 6.18, with the 2026 pagemap fixes, also a
// hole without a page table), and protecting it would install a uffd-wp
// PTE marker there, allocating page tables for the whole range; pagemap
// then shows the markers as swapped pages, which a checkpointer would dump.
// No write is missed by leaving holes alone: a first write to a hole maps a
// page without the uffd-wp bit (written), and a page dropped without a
// write (MADV_DONTNEED) arrives as UFFD_EVENT_REMOVE.
// No PM_SCAN_CHECK_WPASYNC: over a range mixing registered and other VMAs
// it re-protects and then fails, losing the writes it had seen.
PagemapScanQuery writtenQuery(uint64_t start, uint64_t end)
{
    PagemapScanQuery q;
    q.start = start;
    q.end = end;
    q.flags = PM_SCAN_WP_MATCHING;
    q.category_mask = PAGE_IS_WRITTEN;
    q.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
    q.return_mask = PAGE_IS_WRITTEN;
    return q;
}

// The same, returning whether each region is file pages. File pages of
// private mappings are the file's contents until a write copies them (then
// they are anonymous): they are protected but not reported. Deciding FILE
// costs the kernel a page lookup per present PTE (3.3 ms per GiB here, five
// times the rest of the walk), which is why only file-backed ranges ask.
PagemapScanQuery writtenOrFileQuery(uint64_t start, uint64_t end)
{
    PagemapScanQuery q = writtenQuery(start, end);
    q.return_mask = PAGE_IS_WRITTEN | PAGE_IS_FILE;
    return q;
}

} // namespace

Result<void> uffdEnable(int uffd, uint64_t features)
{
    struct uffdio_api api = {};
    api.api = UFFD_API;
    api.features = features;
    if (::ioctl(uffd, UFFDIO_API, &api) < 0)
        return Error::fromErrno(errno, "UFFDIO_API");
    return {};
}

int uffdRegisterWp(int uffd, uint64_t start, uint64_t end)
{
    struct uffdio_register reg = {};
    reg.range.start = start;
    reg.range.len = end - start;
    reg.mode = UFFDIO_REGISTER_MODE_WP;
    return ::ioctl(uffd, UFFDIO_REGISTER, &reg) < 0 ? -errno : 0;
}

int uffdUnregister(int uffd, uint64_t start, uint64_t end)
{
    struct uffdio_range range = {start, end - start};
    return ::ioctl(uffd, UFFDIO_UNREGISTER, &range) < 0 ? -errno : 0;
}

Result<void> collectWritten(PagemapScanner &scanner, int pagemap_fd, uint64_t start, uint64_t end,
                            bool may_hold_file_pages, std::vector<PageRange> &out)
{
    return collectWritten(scanner, pagemap_fd, start, end, may_hold_file_pages,
                          [&out](uint64_t s, uint64_t e, bool wholesale) {
                              if (!out.empty() && out.back().end == s &&
                                  out.back().wholesale == wholesale)
                                  out.back().end = e;
                              else
                                  out.push_back({s, e, wholesale});
                          });
}

Result<void> collectWritten(PagemapScanner &scanner, int pagemap_fd, uint64_t start, uint64_t end,
                            bool may_hold_file_pages, const RangeSink &sink)
{
    if (!may_hold_file_pages)
        return scanner.scan(pagemap_fd, writtenQuery(start, end),
                            [&sink](uint64_t s, uint64_t e, uint64_t) { sink(s, e, false); });
    return scanner.scan(pagemap_fd, writtenOrFileQuery(start, end),
                        [&sink](uint64_t s, uint64_t e, uint64_t categories) {
                            if (!(categories & PAGE_IS_FILE))
                                sink(s, e, false);
                        });
}

void FileBackedRanges::set(uint64_t start, uint64_t end, bool file_backed)
{
    if (start >= end)
        return;
    // Cut the runs that overlap [start, end), keeping their outer parts.
    auto it = by_start_.lower_bound(start);
    if (it != by_start_.begin() && std::prev(it)->second.end > start)
        --it;
    std::vector<Run> keep;
    while (it != by_start_.end() && it->second.start < end) {
        const Run r = it->second;
        if (r.start < start)
            keep.push_back({r.start, start, r.file_backed});
        if (r.end > end)
            keep.push_back({end, r.end, r.file_backed});
        it = by_start_.erase(it);
    }
    for (const Run &r : keep)
        by_start_[r.start] = r;
    by_start_[start] = {start, end, file_backed};
}

std::vector<FileBackedRanges::Run> FileBackedRanges::runs(uint64_t start, uint64_t end) const
{
    std::vector<Run> out;
    forEachRun(start, end, [&out](const Run &r) {
        out.push_back(r);
        return true;
    });
    return out;
}

Result<void> findUntracked(PagemapScanner &scanner, int pagemap_fd, uint64_t start, uint64_t end,
                           std::vector<PageRange> &out)
{
    PagemapScanQuery q;
    q.start = start;
    q.end = end;
    q.category_inverted = PAGE_IS_WPALLOWED;
    q.category_mask = PAGE_IS_WPALLOWED;
    q.return_mask = PAGE_IS_WPALLOWED;
    return scanner.scanInto(pagemap_fd, q, out);
}

} // namespace ooh

// SPDX-License-Identifier: Apache-2.0
// The scans of async userfaultfd write-protect tracking, shared by oohd's
// uffd-wp backend (another process's mm) and libooh's self-tracking (the
// caller's own): which pages were written since they were last protected,
// and which parts of a range are not under tracking at all.
#pragma once

#include "page_range.h"
#include "pagemap_scan.h"
#include "result.h"

#include <cstdint>
#include <map>
#include <vector>

namespace ooh {

// UFFDIO_API with `features`; uffd: a fresh userfaultfd.
Result<void> uffdEnable(int uffd, uint64_t features);
// UFFDIO_REGISTER in write-protect mode; 0 or -errno (callers decide what
// each errno means for them).
int uffdRegisterWp(int uffd, uint64_t start, uint64_t end);
int uffdUnregister(int uffd, uint64_t start, uint64_t end);

// Appends the pages of [start, end) written since they were last protected
// (present or swapped) to `out` and protects them again, atomically per
// page. A page written while this runs is either appended or left
// unprotected for the next call: never lost.
// may_hold_file_pages: the range may hold file pages of private file
// mappings, which read as written until protected but hold the file's
// contents; they are then told apart (at a cost of a page lookup per
// present page) and protected without being reported. Telling them apart
// is only about precision: a file page reported is an over-report.
Result<void> collectWritten(PagemapScanner &scanner, int pagemap_fd, uint64_t start, uint64_t end,
                            bool may_hold_file_pages, std::vector<PageRange> &out);

// Which parts of an address space are backed by files (private file
// mappings, memfds), learned as mappings are registered, so that the
// costly file-page test of collectWritten() runs only there.
class FileBackedRanges {
public:
    struct Run {
        uint64_t start, end;
        bool file_backed;
        bool operator==(const Run &) const = default;
    };

    // Records [start, end) as file-backed or not, replacing what was known.
    void set(uint64_t start, uint64_t end, bool file_backed);
    // [start, end) cut into maximal runs of one kind, in address order.
    // Addresses never set join the run before them (either kind is correct
    // there: see collectWritten()); a leading unknown part counts as
    // file-backed.
    std::vector<Run> runs(uint64_t start, uint64_t end) const;

private:
    std::map<uint64_t, Run> by_start_;  // non-overlapping
};

// Appends the parts of [start, end) whose VMAs are not registered for
// write-protect tracking (PAGE_IS_WPALLOWED unset): new mappings, and
// mappings that cannot be registered.
Result<void> findUntracked(PagemapScanner &scanner, int pagemap_fd, uint64_t start, uint64_t end,
                           std::vector<PageRange> &out);

} // namespace ooh

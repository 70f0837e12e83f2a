// SPDX-License-Identifier: Apache-2.0
// The scans of async userfaultfd write-protect tracking, shared by oohd's
// uffd-wp backend (another process's mm) and libooh's self-tracking (the
// caller's own): which pages were written since they were last protected,
// and which parts of a range are not under tracking at all.
#pragma once

#include "page_range.h"
#include "pagemap_scan.h"
#include "result.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <vector>

namespace ooh {

// Receives ranges as a scan finds them: [start, end), and whether the range
// is reported as a whole. Callers that must not allocate (a collector with
// its world stopped) pass a lambda capturing one pointer or reference:
// std::function keeps such a target in place.
using RangeSink = std::function<void(uint64_t start, uint64_t end, bool wholesale)>;

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
// The same, handing each range to `sink` as it is found (ascending, not
// merged); allocates nothing but on error.
Result<void> collectWritten(PagemapScanner &scanner, int pagemap_fd, uint64_t start, uint64_t end,
                            bool may_hold_file_pages, const RangeSink &sink);

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
    // The same runs, handed to visit(const Run &) as they are found, without
    // allocating; visit returns false to stop. Returns false if stopped.
    template <typename Visit> bool forEachRun(uint64_t start, uint64_t end, Visit &&visit) const;

private:
    std::map<uint64_t, Run> by_start_; // non-overlapping
};

template <typename Visit>
bool FileBackedRanges::forEachRun(uint64_t start, uint64_t end, Visit &&visit) const
{
    // A run is handed over once the next one cannot extend it.
    Run pending{};
    bool have = false;
    auto add = [&](uint64_t s, uint64_t e, bool file_backed) {
        if (s >= e)
            return true;
        if (have && pending.file_backed == file_backed && pending.end == s) {
            pending.end = e;
            return true;
        }
        if (have && !visit(static_cast<const Run &>(pending)))
            return false;
        pending = {s, e, file_backed};
        have = true;
        return true;
    };
    uint64_t pos = start;
    auto it = by_start_.lower_bound(start);
    if (it != by_start_.begin() && std::prev(it)->second.end > start)
        --it;
    for (; it != by_start_.end() && it->second.start < end && pos < end; ++it) {
        const Run &r = it->second;
        // The unknown gap before r joins the run before it.
        if (r.start > pos && !add(pos, r.start, have ? pending.file_backed : true))
            return false;
        if (!add(std::max(pos, r.start), std::min(end, r.end), r.file_backed))
            return false;
        pos = std::max(pos, std::min(end, r.end));
    }
    if (pos < end && !add(pos, end, have ? pending.file_backed : true))
        return false;
    return !have || visit(static_cast<const Run &>(pending));
}

// Appends the parts of [start, end) whose VMAs are not registered for
// write-protect tracking (PAGE_IS_WPALLOWED unset): new mappings, and
// mappings that cannot be registered.
Result<void> findUntracked(PagemapScanner &scanner, int pagemap_fd, uint64_t start, uint64_t end,
                           std::vector<PageRange> &out);

} // namespace ooh

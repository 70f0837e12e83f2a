// SPDX-License-Identifier: Apache-2.0
// UffdWpSpace: async userfaultfd write-protect tracking of the mappings in
// parts of one address space: registers them, finds what was written since
// the last collect, adopts mappings that appear, and remembers discards.
// Shared by oohd's uffd-wp backend (a target's whole address space) and
// libooh's self-tracking (ranges the caller chose).
//
// What the written-page scan cannot see, and how it is covered:
//  - mappings created since the last collect (mmap, brk, mremap moves):
//    not registered, so a coverage scan (VMAs without PAGE_IS_WPALLOWED)
//    finds them; they are reported wholly, registered and armed;
//  - pages discarded by MADV_DONTNEED/MADV_FREE (their new contents are
//    zero, but they read as unwritten): UFFD_EVENT_REMOVE reports the range
//    (the owner reads the events and calls noteRemoved()); it is reported
//    wholesale in the next two collects (the zap follows the event, so one
//    collect could run between the two);
//  - mappings that cannot be registered but can be written (another uffd
//    owns them, device memory): reported wholly at every collect;
//  - shared mappings (MAP_SHARED files, memfds, shared anonymous memory):
//    their pages change through the page cache too (write() or pwrite(), by
//    anyone), which no PTE sees. They are never registered and are reported
//    wholly at every collect.
#pragma once

#include "compat/linux_mm.h"
#include "page_range.h"
#include "pagemap_scan.h"
#include "proc_maps.h"
#include "result.h"
#include "uffd_wp_scan.h"

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace ooh {

class UffdWpSpace {
public:
    // Features to ask of a new userfaultfd: async write-protect, and
    // discard events when the kernel has them (see probeFeatures()).
    static constexpr uint64_t kRequiredFeatures =
        UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
    static constexpr uint64_t kWantedFeatures = kRequiredFeatures | UFFD_FEATURE_EVENT_REMOVE;

    // uffd: enabled with at least kRequiredFeatures; pagemap_fd and maps_fd:
    // /proc/PID/pagemap and /proc/PID/maps of the same process, all owned
    // by the caller and outliving this. `owner` names the process in
    // messages ("pid 42", "this process"); `notice` receives what is worth
    // logging (a mapping that cannot be registered), may be empty.
    UffdWpSpace(int uffd, int pagemap_fd, int maps_fd, std::string owner,
                std::function<void(const std::string &)> notice = {});

    // Registers and arms every mapping of [start, end) that is not yet
    // tracked. report == nullptr (when tracking starts): nothing is
    // reported, and a mapping another userfaultfd owns is an error (EBUSY).
    // Otherwise each adopted mapping is appended to *report, wholesale.
    Result<void> adopt(uint64_t start, uint64_t end, std::vector<PageRange> *report);

    // Appends the pages of [start, end) written since the last call (exact,
    // re-armed) and the mappings that appeared there (wholesale, adopted).
    Result<void> collect(uint64_t start, uint64_t end, std::vector<PageRange> &out);
    // The same, handing ranges to `sink` as they are found: the written
    // pages ascending, then the adopted mappings ascending; they do not
    // overlap unless a mapping is replaced while this runs. Allocates
    // nothing unless a mapping appeared in [start, end) or on error.
    Result<void> collect(uint64_t start, uint64_t end, const RangeSink &sink);

    // A UFFD_EVENT_REMOVE for [start, end).
    void noteRemoved(uint64_t start, uint64_t end);
    // Appends the discards of this epoch and the previous one, and starts a
    // new epoch of discards. Once per collect, after collect().
    void takeRemoved(std::vector<PageRange> &out);

    // Bytes registered for exact tracking (for stats).
    uint64_t trackedBytes() const { return tracked_bytes_; }

private:
    Result<void> adoptInto(uint64_t start, uint64_t end, const RangeSink *report);
    Result<void> adoptVma(const MapEntry &vma, const RangeSink *report);

    int uffd_;
    int pagemap_;
    int maps_;
    std::string owner_;
    std::function<void(const std::string &)> notice_;
    PagemapScanner scanner_;
    FileBackedRanges file_backed_;        // where file pages can be
    std::vector<PageRange> removed_now_;  // discarded since the last collect
    std::vector<PageRange> removed_prev_; // discarded before it (reported again)
    uint64_t tracked_bytes_ = 0;
    std::set<uint64_t> warned_; // unregistrable ranges already noticed
};

} // namespace ooh

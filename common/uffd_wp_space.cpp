// SPDX-License-Identifier: Apache-2.0
// Implementation of uffd_wp_space.h.
#include "uffd_wp_space.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace ooh {

namespace {

// Mappings whose contents the kernel provides (they cannot be registered)
// and that checkpointers recreate rather than dump. Only while they are not
// writable: a process that mprotect()s its vDSO writable gets it reported.
bool isKernelOwned(const MapEntry &m)
{
    return !m.write && (m.path == "[vvar]" || m.path == "[vvar_vclock]" || m.path == "[vsyscall]" ||
                        m.path == "[vdso]");
}

std::string hex(uint64_t v)
{
    char buf[24];
    std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

} // namespace

UffdWpSpace::UffdWpSpace(int uffd, int pagemap_fd, int maps_fd, std::string owner,
                         std::function<void(const std::string &)> notice)
    : uffd_(uffd), pagemap_(pagemap_fd), maps_(maps_fd), owner_(std::move(owner)),
      notice_(std::move(notice))
{
}

Result<void> UffdWpSpace::adoptVma(const MapEntry &vma, const RangeSink *report)
{
    if (isKernelOwned(vma))
        return {};
    if (vma.shared) {
        // Written through the page cache as much as through PTEs: reported
        // whole at every collect (unregistered, the coverage scan finds it
        // again each time).
        if (report)
            (*report)(vma.start, vma.end, true);
        return {};
    }
    int err = uffdRegisterWp(uffd_, vma.start, vma.end);
    if (err == 0) {
        // Arm: protect whatever is present now. What this scan returns was
        // written before the range was tracked and is covered by the
        // wholesale report below, so it is dropped.
        const bool file_backed = vma.inode != 0;
        std::vector<PageRange> ignored;
        OOH_TRY(collectWritten(scanner_, pagemap_, vma.start, vma.end, file_backed, ignored));
        file_backed_.set(vma.start, vma.end, file_backed);
        tracked_bytes_ += vma.end - vma.start;
        if (report)
            (*report)(vma.start, vma.end, true);
        return {};
    }
    if (err == -EPERM) {
        // No VM_MAYWRITE: the process can never write it through this
        // mapping (shared mappings, whose contents can change otherwise,
        // were handled above).
        return {};
    }
    if (err == -EBUSY && !report)
        return makeError(EBUSY, owner_ + " already uses userfaultfd on " + hex(vma.start) + "-" +
                                    hex(vma.end) + (vma.path.empty() ? "" : " (" + vma.path + ")") +
                                    "; a mapping can belong to one userfaultfd only");
    // Anything else (EINVAL: a mapping type uffd cannot watch, or one that
    // went away since the scan): report it whole, an over-report at worst.
    if (warned_.insert(vma.start).second && notice_)
        notice_(owner_ + ": cannot register " + hex(vma.start) + "-" + hex(vma.end) + " " +
                vma.path + " (" + std::strerror(-err) + "); reported wholly at every collect");
    if (report)
        (*report)(vma.start, vma.end, true);
    return {};
}

Result<void> UffdWpSpace::adopt(uint64_t start, uint64_t end, std::vector<PageRange> *report)
{
    if (!report)
        return adoptInto(start, end, nullptr);
    const RangeSink sink = [report](uint64_t s, uint64_t e, bool wholesale) {
        report->push_back({s, e, wholesale});
    };
    return adoptInto(start, end, &sink);
}

Result<void> UffdWpSpace::adoptInto(uint64_t start, uint64_t end, const RangeSink *report)
{
    // Ranges of VMAs that are not write-protect-tracked by our uffd (none,
    // usually: then nothing is allocated).
    std::vector<PageRange> uncovered;
    OOH_TRY(findUntracked(scanner_, pagemap_, start, end, uncovered));
    for (const auto &r : uncovered) {
        auto vmas = vmasIn(maps_, r.start, r.end);
        if (!vmas) {
            // Cannot classify: report the whole range rather than guess.
            if (!report)
                return vmas.takeError();
            (*report)(r.start, r.end, true);
            continue;
        }
        for (const auto &vma : *vmas)
            OOH_TRY(adoptVma(vma, report));
    }
    return {};
}

Result<void> UffdWpSpace::collect(uint64_t start, uint64_t end, std::vector<PageRange> &out)
{
    return collect(start, end, [&out](uint64_t s, uint64_t e, bool wholesale) {
        if (!out.empty() && out.back().end == s && out.back().wholesale == wholesale)
            out.back().end = e;
        else
            out.push_back({s, e, wholesale});
    });
}

Result<void> UffdWpSpace::collect(uint64_t start, uint64_t end, const RangeSink &sink)
{
    // 1. Pages written in tracked mappings; re-armed in the same step.
    Result<void> scanned;
    file_backed_.forEachRun(start, end, [&](const FileBackedRanges::Run &run) {
        scanned = collectWritten(scanner_, pagemap_, run.start, run.end, run.file_backed, sink);
        return scanned.ok();
    });
    if (!scanned)
        return scanned.takeError();
    // 2. Mappings that appeared since: reported wholly, then tracked.
    return adoptInto(start, end, &sink);
}

void UffdWpSpace::noteRemoved(uint64_t start, uint64_t end)
{
    removed_now_.push_back({start, end, true});
}

void UffdWpSpace::takeRemoved(std::vector<PageRange> &out)
{
    out.insert(out.end(), removed_prev_.begin(), removed_prev_.end());
    out.insert(out.end(), removed_now_.begin(), removed_now_.end());
    removed_prev_ = std::move(removed_now_);
    removed_now_.clear();
}

} // namespace ooh

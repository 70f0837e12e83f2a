// SPDX-License-Identifier: Apache-2.0
// Implementation of the soft-dirty backend (oohd/backends/soft_dirty.h).
//
// Soft-dirty has no atomic get-and-reset: clear_refs resets the whole mm.
// A write that lands between reading a page's bit and the reset would be
// lost, so every collect runs with all threads of the target stopped
// (PTRACE_SEIZE + PTRACE_INTERRUPT, invisible to its parent), unless they are
// all stopped already (CRIU has frozen them).
#include "soft_dirty.h"

#include "compat/linux_mm.h"
#include "log.h"
#include "pagemap_scan.h"
#include "target.h"
#include "thread_stop.h"
#include "unique_fd.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace ooh {

namespace {

constexpr const char *kLog = "soft-dirty";

uint64_t pageSize()
{
    static const uint64_t size = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    return size;
}

class SoftDirtyTracker final : public Tracker {
public:
    SoftDirtyTracker(const Target &target, UniqueFD pagemap, UniqueFD clear_refs, bool pagemap_scan)
        : target_(target), pid_(target.pid()), pagemap_(std::move(pagemap)),
          clear_refs_(std::move(clear_refs)), pagemap_scan_(pagemap_scan)
    {
    }

    Result<void> start()
    {
        auto maps = target_.readMaps();
        if (!maps)
            return maps.takeError();
        maps_ = std::move(*maps);
        std::vector<PageRange> ignored;
        for (const MapEntry &m : maps_)
            if (!m.isKernelSpecial())
                OOH_TRY(pagemap_scan_ ? scanVma(m, ignored) : readVma(m, ignored));
        present_ = std::move(present_now_);
        present_now_.clear();
        return reset();
    }

    Result<void> collect(std::vector<PageRange> &out) override
    {
        // Held until the reset below; released (detached) on return.
        StopOptions stop;
        stop.accept_stopped_by_other_tracer = true; // CRIU has frozen them
        auto stopped = stopAllThreads(target_, stop);
        if (!stopped)
            return makeError(stopped.error().code,
                             "soft-dirty needs every thread of pid " + std::to_string(pid_) +
                                 " stopped to reset atomically: " + stopped.error().message);

        auto maps = target_.readMaps();
        if (!maps)
            return maps.takeError();
        std::vector<PageRange> found;
        uint64_t tracked = 0;
        for (const MapEntry &m : *maps) {
            if (m.isKernelSpecial())
                continue;
            tracked += m.end - m.start;
            OOH_TRY(pagemap_scan_ ? scanVma(m, found) : readVma(m, found));
        }
        soft_dirty::appendVanishedPages(present_, present_now_, pageSize(), found);
        present_ = std::move(present_now_);
        present_now_.clear();
        // pagemap reads report a new or merged VMA's pages soft-dirty by
        // its VM_SOFTDIRTY flag; PAGEMAP_SCAN may not report its holes.
        if (pagemap_scan_) {
            for (PageRange r : soft_dirty::newMappingRanges(maps_, *maps)) {
                r.wholesale = true;
                found.push_back(r);
            }
        }
        appendSharedMappings(*maps, found);
        // Reset while every thread is still stopped: nothing can be written
        // between the read above and this.
        OOH_TRY(reset());
        maps_ = std::move(*maps);
        tracked_ = tracked;
        out.insert(out.end(), found.begin(), found.end());
        return {};
    }

    uint64_t trackedBytes() const override { return tracked_; }
    // Pages present at the previous collect and gone now are reported.
    bool reportsDiscards() const override { return true; }

private:
    Result<void> reset()
    {
        if (::pwrite(clear_refs_.get(), "4", 1, 0) != 1)
            return Error::fromErrno(errno, "write clear_refs of " + std::to_string(pid_));
        return {};
    }

    Result<void> readVma(const MapEntry &m, std::vector<PageRange> &out)
    {
        const uint64_t ps = pageSize();
        std::vector<uint64_t> buf(16384);
        for (uint64_t addr = m.start; addr < m.end;) {
            uint64_t pages = std::min<uint64_t>(buf.size(), (m.end - addr) / ps);
            ssize_t n =
                ::pread(pagemap_.get(), buf.data(), pages * 8, static_cast<off_t>(addr / ps * 8));
            if (n < 0)
                return Error::fromErrno(errno, "read pagemap of " + std::to_string(pid_));
            if (n == 0 || n % 8)
                return makeError(EIO, "short pagemap read for " + std::to_string(pid_));
            size_t got = static_cast<size_t>(n) / 8;
            soft_dirty::appendDirtyRanges(addr, std::span(buf.data(), got), ps, out);
            for (size_t i = 0; i < got; ++i)
                if (buf[i] & soft_dirty::kPagemapPresentOrSwapped)
                    present_now_.push_back(addr + i * ps);
            addr += got * ps;
        }
        return {};
    }

    Result<void> scanVma(const MapEntry &m, std::vector<PageRange> &out)
    {
        // Soft-dirty pages, and which pages are there at all.
        PagemapScanQuery q;
        q.start = m.start;
        q.end = m.end;
        q.category_anyof_mask = PAGE_IS_SOFT_DIRTY | PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
        q.return_mask = PAGE_IS_SOFT_DIRTY | PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
        return scanner_.scan(pagemap_.get(), q, [&](uint64_t start, uint64_t end, uint64_t cat) {
            if (cat & PAGE_IS_SOFT_DIRTY)
                out.push_back({start, end, false});
            if (cat & (PAGE_IS_PRESENT | PAGE_IS_SWAPPED))
                for (uint64_t a = start; a < end; a += pageSize())
                    present_now_.push_back(a);
        });
    }

    Target target_;
    pid_t pid_;
    UniqueFD pagemap_;
    UniqueFD clear_refs_;
    bool pagemap_scan_;
    std::vector<MapEntry> maps_;
    std::vector<uint64_t> present_;     // pages present or swapped at the last reset
    std::vector<uint64_t> present_now_; // being gathered by this collect
    uint64_t tracked_ = 0;
    PagemapScanner scanner_{512};
};

} // namespace

namespace soft_dirty {

void appendDirtyRanges(uint64_t start, std::span<const uint64_t> entries, uint64_t page_size,
                       std::vector<PageRange> &out)
{
    for (size_t i = 0; i < entries.size(); ++i) {
        if (!(entries[i] & kPagemapSoftDirty))
            continue;
        uint64_t a = start + i * page_size;
        if (!out.empty() && !out.back().wholesale && out.back().end == a)
            out.back().end = a + page_size;
        else
            out.push_back({a, a + page_size, false});
    }
}

void appendVanishedPages(const std::vector<uint64_t> &before, const std::vector<uint64_t> &now,
                         uint64_t page_size, std::vector<PageRange> &out)
{
    size_t j = 0;
    for (uint64_t va : before) {
        while (j < now.size() && now[j] < va)
            ++j;
        if (j < now.size() && now[j] == va)
            continue;
        if (!out.empty() && !out.back().wholesale && out.back().end == va)
            out.back().end = va + page_size;
        else
            out.push_back({va, va + page_size, false});
    }
}

std::vector<PageRange> newMappingRanges(const std::vector<MapEntry> &before,
                                        const std::vector<MapEntry> &now)
{
    std::vector<PageRange> out;
    for (const MapEntry &m : now) {
        if (m.isKernelSpecial())
            continue;
        // Parts of `before` with m's backing, in address order (maps are).
        std::vector<PageRange> same;
        for (const MapEntry &b : before) {
            if (b.end <= m.start || b.start >= m.end || b.inode != m.inode ||
                (m.inode != 0 && b.offset + m.start != m.offset + b.start))
                continue;
            same.push_back({std::max(b.start, m.start), std::min(b.end, m.end), true});
        }
        uint64_t at = m.start;
        for (const PageRange &k : same) {
            if (k.start > at)
                out.push_back({at, k.start, true});
            at = std::max(at, k.end);
        }
        if (at < m.end)
            out.push_back({at, m.end, true});
    }
    return out;
}

} // namespace soft_dirty

BackendProbe SoftDirtyBackend::probe()
{
    available_ = false;
    const uint64_t ps = pageSize();
    void *page = ::mmap(nullptr, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED)
        return {false, std::string("mmap: ") + std::strerror(errno)};
    static_cast<volatile char *>(page)[0] = 1;
    UniqueFD pagemap(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
    uint64_t entry = 0;
    bool read_ok = pagemap.isValid() &&
                   ::pread(pagemap.get(), &entry, 8,
                           static_cast<off_t>(reinterpret_cast<uintptr_t>(page) / ps * 8)) == 8;
    BackendProbe result;
    if (!read_ok) {
        result = {false, std::string("cannot read /proc/self/pagemap: ") + std::strerror(errno)};
    } else if (!(entry & soft_dirty::kPagemapSoftDirty)) {
        // A page just written always reads soft-dirty where the kernel has it.
        result = {false, "kernel built without CONFIG_MEM_SOFT_DIRTY (pagemap bit 55 never set)"};
    } else {
        pm_scan_arg arg = {};
        page_region region = {};
        arg.size = sizeof(arg);
        arg.start = reinterpret_cast<uintptr_t>(page);
        arg.end = arg.start + ps;
        arg.vec = reinterpret_cast<uintptr_t>(&region);
        arg.vec_len = 1;
        arg.category_mask = PAGE_IS_SOFT_DIRTY;
        arg.return_mask = PAGE_IS_SOFT_DIRTY;
        pagemap_scan_ = ::ioctl(pagemap.get(), PAGEMAP_SCAN, &arg) >= 0;
        available_ = true;
        result = {true, pagemap_scan_ ? "clear_refs + PAGEMAP_SCAN(PAGE_IS_SOFT_DIRTY)"
                                      : "clear_refs + /proc/PID/pagemap bit 55"};
    }
    ::munmap(page, ps);
    return result;
}

Result<std::unique_ptr<Tracker>> SoftDirtyBackend::track(const Target &target)
{
    if (!available_)
        return makeError(ENOTSUP, "soft-dirty is not available on this kernel");
    auto pagemap = target.openFile("pagemap", O_RDONLY);
    if (!pagemap)
        return pagemap.takeError();
    auto clear_refs = target.openFile("clear_refs", O_WRONLY);
    if (!clear_refs)
        return clear_refs.takeError();
    auto tracker = std::make_unique<SoftDirtyTracker>(target, std::move(*pagemap),
                                                      std::move(*clear_refs), pagemap_scan_);
    OOH_TRY(tracker->start());
    OOH_LOG(kLog, Info) << "tracking pid " << target.pid()
                        << (pagemap_scan_ ? " with PAGEMAP_SCAN" : " with pagemap reads");
    return std::unique_ptr<Tracker>(std::move(tracker));
}

} // namespace ooh

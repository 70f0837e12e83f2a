// SPDX-License-Identifier: Apache-2.0
// The uffd-wp backend.
//
// The daemon gets a userfaultfd that acts on the target's mm by injecting
// userfaultfd() into the target (oohd/inject) and copying the fd out with
// pidfd_getfd. Every mapping is registered in write-protect mode with
// UFFD_FEATURE_WP_ASYNC: the first write to a protected page is resolved in
// the kernel (the page loses its protection, no message, no round trip).
// A collect is one PAGEMAP_SCAN that returns the unprotected ("written")
// pages and protects them again, atomically per page.
//
// What the scan cannot see, and how it is covered:
//  - mappings created since the last collect (mmap, brk, mremap moves):
//    not registered, so a coverage scan (VMAs without PAGE_IS_WPALLOWED)
//    finds them; they are reported wholly, registered and armed;
//  - pages discarded by MADV_DONTNEED/MADV_FREE (their new contents are
//    zero, but they read as unwritten): UFFD_EVENT_REMOVE reports the range,
//    which is reported wholesale in the next two collects (the zap follows
//    the event, so one collect could run between the two);
//  - mappings that cannot be registered but can be written (another uffd
//    owns them, device memory): reported wholly at every collect;
//  - shared mappings (MAP_SHARED files, memfds, shared anonymous memory):
//    their pages change through the page cache too (the target's own
//    write() or pwrite(), or any other process), which no PTE of the
//    target sees. They are never registered and are reported wholly at
//    every collect.
//
// Tracking must not change what a checkpointer sees. The kernel reads an
// unpopulated page of a uffd-wp VMA as written, and a scan that re-arms it
// installs a uffd-wp PTE marker there (allocating page tables for the whole
// range), which /proc/PID/pagemap reports as a swapped page: CRIU would
// then dump, and fault in, every unpopulated page of every mapping. So the
// scans only ever consider pages that exist (present or swapped) and are
// anonymous: holes stay holes, and file pages (not yet copied on write)
// are the file's contents, which is also how CRIU sees them.
#include "uffd_wp.h"

#include "compat/linux_mm.h"
#include "inject/remote_syscall.h"
#include "log.h"
#include "pagemap_scan.h"
#include "proc_maps.h"

#include <chrono>
#include <set>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/utsname.h>

namespace ooh {

namespace {

constexpr const char *kLog = "uffd-wp";
constexpr uint64_t kRequiredFeatures = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
constexpr uint64_t kWantedFeatures = kRequiredFeatures | UFFD_FEATURE_EVENT_REMOVE;

// Mappings whose contents the kernel provides (they cannot be registered)
// and that checkpointers recreate rather than dump. Only while they are not
// writable: a process that mprotect()s its vDSO writable gets it reported.
bool isKernelOwned(const MapEntry &m)
{
    return !m.write && (m.path == "[vvar]" || m.path == "[vvar_vclock]" ||
                        m.path == "[vsyscall]" || m.path == "[vdso]");
}

Result<void> uffdApi(int uffd, uint64_t features)
{
    struct uffdio_api api = {};
    api.api = UFFD_API;
    api.features = features;
    if (::ioctl(uffd, UFFDIO_API, &api) < 0)
        return Error::fromErrno(errno, "UFFDIO_API");
    return {};
}

int uffdRegister(int uffd, uint64_t start, uint64_t end)
{
    struct uffdio_register reg = {};
    reg.range.start = start;
    reg.range.len = end - start;
    reg.mode = UFFDIO_REGISTER_MODE_WP;
    return ::ioctl(uffd, UFFDIO_REGISTER, &reg) < 0 ? -errno : 0;
}

std::string hex(uint64_t v)
{
    char buf[24];
    std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

PagemapScanQuery writtenQuery(uint64_t start, uint64_t end)
{
    // Written, anonymous (not FILE), and present or swapped. Not the
    // kernel's fast path (category_mask = return_mask = PAGE_IS_WRITTEN
    // alone): it reads every unpopulated PTE of a uffd-wp VMA as written
    // and re-arms it with a marker; kernels with the 2026 pagemap fixes
    // (6.18 here) do the same for holes without a page table, so arming a
    // 64 MiB PROT_NONE reservation filled it with 16384 markers. Requiring
    // PRESENT or SWAPPED leaves holes alone and misses no write: a first
    // write to a hole maps a page without the uffd-wp bit (written), and a
    // page dropped without a write (MADV_DONTNEED) arrives as
    // UFFD_EVENT_REMOVE. File pages of private mappings are the file's
    // contents until a write copies them (then they are anonymous).
    // No PM_SCAN_CHECK_WPASYNC: over a range mixing registered and other
    // VMAs it re-protects and then fails, losing the writes it had seen.
    PagemapScanQuery q;
    q.start = start;
    q.end = end;
    q.flags = PM_SCAN_WP_MATCHING;
    q.category_inverted = PAGE_IS_FILE;
    q.category_mask = PAGE_IS_WRITTEN | PAGE_IS_FILE;
    q.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
    q.return_mask = PAGE_IS_WRITTEN;
    return q;
}

class UffdWpTracker final : public Tracker {
public:
    UffdWpTracker(pid_t pid, UniqueFD uffd, UniqueFD pagemap, UniqueFD maps, bool remove_events)
        : pid_(pid), uffd_(std::move(uffd)), pagemap_(std::move(pagemap)), maps_(std::move(maps)),
          remove_events_(remove_events)
    {
    }

    // Registers and arms every mapping; with report = false (at track time)
    // nothing is reported and a mapping owned by another uffd is an error.
    Result<void> adoptUncovered(std::vector<PageRange> *report);

    Result<void> collect(std::vector<PageRange> &out) override;
    int eventFd() const override { return remove_events_ ? uffd_.get() : -1; }
    Result<void> handleEvents() override;
    uint64_t trackedBytes() const override { return tracked_bytes_; }

private:
    Result<void> adoptVma(const MapEntry &vma, std::vector<PageRange> *report);

    pid_t pid_;
    UniqueFD uffd_;
    UniqueFD pagemap_;
    UniqueFD maps_;
    bool remove_events_;
    PagemapScanner scanner_;
    std::vector<PageRange> removed_now_;   // discarded since the last collect
    std::vector<PageRange> removed_prev_;  // discarded before it (reported again)
    uint64_t tracked_bytes_ = 0;
    std::set<uint64_t> warned_;  // unregistrable ranges already logged
};

Result<void> UffdWpTracker::adoptVma(const MapEntry &vma, std::vector<PageRange> *report)
{
    if (isKernelOwned(vma))
        return {};
    if (vma.shared) {
        // Written through the page cache as much as through PTEs: reported
        // whole at every collect (unregistered, the coverage scan finds it
        // again each time).
        if (report)
            report->push_back({vma.start, vma.end, true});
        return {};
    }
    int err = uffdRegister(uffd_.get(), vma.start, vma.end);
    if (err == 0) {
        // Arm: protect whatever is present now. What this scan returns was
        // written before the range was tracked and is covered by the
        // wholesale report below, so it is dropped.
        std::vector<PageRange> ignored;
        OOH_TRY(scanner_.scanInto(pagemap_.get(), writtenQuery(vma.start, vma.end), ignored));
        tracked_bytes_ += vma.end - vma.start;
        if (report)
            report->push_back({vma.start, vma.end, true});
        return {};
    }
    if (err == -EPERM) {
        // No VM_MAYWRITE: the process can never write it through this
        // mapping (shared mappings, whose contents can change otherwise,
        // were handled above).
        return {};
    }
    if (err == -EBUSY && !report)
        return makeError(EBUSY, "pid " + std::to_string(pid_) + " already uses userfaultfd on " +
                                    hex(vma.start) + "-" + hex(vma.end) +
                                    (vma.path.empty() ? "" : " (" + vma.path + ")") +
                                    "; a mapping can belong to one userfaultfd only, so the "
                                    "uffd-wp backend cannot track this process (try another "
                                    "backend with --backend)");
    // Anything else (EINVAL: a mapping type uffd cannot watch, or one that
    // went away since the scan): report it whole, an over-report at worst.
    if (warned_.insert(vma.start).second)
        OOH_LOG(kLog, Info) << "pid " << pid_ << ": cannot register " << hex(vma.start) << "-"
                            << hex(vma.end) << " " << vma.path << " (" << std::strerror(-err)
                            << "); reported wholly at every collect";
    if (report)
        report->push_back({vma.start, vma.end, true});
    return {};
}

Result<void> UffdWpTracker::adoptUncovered(std::vector<PageRange> *report)
{
    // Ranges of VMAs that are not write-protect-tracked by our uffd.
    PagemapScanQuery q;
    q.start = 0;
    q.end = userAddressLimit();
    q.category_inverted = PAGE_IS_WPALLOWED;
    q.category_mask = PAGE_IS_WPALLOWED;
    q.return_mask = PAGE_IS_WPALLOWED;
    std::vector<PageRange> uncovered;
    OOH_TRY(scanner_.scanInto(pagemap_.get(), q, uncovered));
    for (const auto &r : uncovered) {
        auto vmas = vmasIn(maps_.get(), r.start, r.end);
        if (!vmas) {
            // Cannot classify: report the whole range rather than guess.
            if (!report)
                return vmas.takeError();
            report->push_back({r.start, r.end, true});
            continue;
        }
        for (const auto &vma : *vmas)
            OOH_TRY(adoptVma(vma, report));
    }
    return {};
}

Result<void> UffdWpTracker::handleEvents()
{
    struct uffd_msg msgs[16];
    for (;;) {
        ssize_t n = ::read(uffd_.get(), msgs, sizeof(msgs));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return {};
            return Error::fromErrno(errno, "read userfaultfd events of pid " + std::to_string(pid_));
        }
        for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(msgs[0]); ++i) {
            if (msgs[i].event == UFFD_EVENT_REMOVE)
                removed_now_.push_back({msgs[i].arg.remove.start, msgs[i].arg.remove.end, true});
        }
    }
}

Result<void> UffdWpTracker::collect(std::vector<PageRange> &out)
{
    OOH_TRY(handleEvents());
    // 1. Pages written in tracked mappings; re-armed in the same step.
    OOH_TRY(scanner_.scanInto(pagemap_.get(), writtenQuery(0, userAddressLimit()), out));
    // 2. Mappings that appeared since: reported wholly, then tracked.
    OOH_TRY(adoptUncovered(&out));
    // 3. Discarded pages.
    out.insert(out.end(), removed_prev_.begin(), removed_prev_.end());
    out.insert(out.end(), removed_now_.begin(), removed_now_.end());
    removed_prev_ = std::move(removed_now_);
    removed_now_.clear();
    return {};
}

std::string kernelRelease()
{
    struct utsname u;
    return ::uname(&u) == 0 ? u.release : "unknown";
}

} // namespace

BackendProbe UffdWpBackend::probe()
{
    BackendProbe p;
    UniqueFD uffd(static_cast<int>(
        ::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)));
    if (!uffd.isValid()) {
        p.reason = errno == ENOSYS ? "kernel built without userfaultfd (CONFIG_USERFAULTFD)"
                                   : std::string("userfaultfd() refused: ") + std::strerror(errno) +
                                         " (seccomp policy or vm.unprivileged_userfaultfd)";
        return p;
    }
    // Which features exist: UFFDIO_API with features = 0 reports them all.
    struct uffdio_api api = {};
    api.api = UFFD_API;
    if (::ioctl(uffd.get(), UFFDIO_API, &api) < 0) {
        p.reason = std::string("UFFDIO_API failed: ") + std::strerror(errno);
        return p;
    }
    if ((api.features & kRequiredFeatures) != kRequiredFeatures) {
        p.reason = "kernel " + kernelRelease() +
                   " lacks async userfaultfd write-protect (UFFD_FEATURE_WP_ASYNC, Linux >= 6.7)";
        return p;
    }
    features_ = api.features & kWantedFeatures;

    // End-to-end self-test on our own memory: arm, write one page, scan.
    UniqueFD self_uffd(static_cast<int>(
        ::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)));
    UniqueFD pagemap(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    void *mem = ::mmap(nullptr, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
    if (!self_uffd.isValid() || !pagemap.isValid() || mem == MAP_FAILED) {
        p.reason = std::string("self-test setup failed: ") + std::strerror(errno);
        if (mem != MAP_FAILED)
            ::munmap(mem, 4 * page);
        return p;
    }
    auto base = reinterpret_cast<uint64_t>(mem);
    std::string failure;
    if (!uffdApi(self_uffd.get(), kRequiredFeatures))
        failure = "UFFDIO_API with WP_ASYNC failed";
    else if (int err = uffdRegister(self_uffd.get(), base, base + 4 * page); err < 0)
        failure = std::string("UFFDIO_REGISTER (WP) failed: ") + std::strerror(-err);
    else {
        static_cast<volatile char *>(mem)[0] = 1;  // written before arming
        PagemapScanner scanner(16);
        std::vector<PageRange> found;
        auto armed = scanner.scanInto(pagemap.get(), writtenQuery(base, base + 4 * page), found);
        if (!armed) {
            failure = armed.error().code == ENOTTY
                          ? "kernel " + kernelRelease() + " lacks PAGEMAP_SCAN (Linux >= 6.7)"
                          : armed.error().message;
        } else {
            static_cast<volatile char *>(mem)[2 * page] = 1;
            found.clear();
            auto r = scanner.scanInto(pagemap.get(), writtenQuery(base, base + 4 * page), found);
            std::vector<PageRange> want{{base + 2 * page, base + 3 * page, false}};
            if (!r)
                failure = r.error().message;
            else if (found != want)
                failure = "self-test: PAGEMAP_SCAN did not report exactly the written page";
        }
    }
    ::munmap(mem, 4 * page);
    if (!failure.empty()) {
        p.reason = failure;
        return p;
    }
    p.available = true;
    p.reason = "userfaultfd async write-protect + PAGEMAP_SCAN on Linux " + kernelRelease() +
               ((features_ & UFFD_FEATURE_EVENT_REMOVE) ? ", discard events" : "");
    return p;
}

Result<std::unique_ptr<Tracker>> UffdWpBackend::track(const Target &target)
{
    if (!(features_ & UFFD_FEATURE_WP_ASYNC))
        return makeError(ENOTSUP, "uffd-wp backend is not available on this kernel");
    const std::string pid = std::to_string(target.pid());

    // A userfaultfd of the target's own mm, made by the target.
    auto t0 = std::chrono::steady_clock::now();
    auto remote = RemoteSyscalls::attach(target);
    if (!remote)
        return remote.takeError();
    auto target_fd = remote->call(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (!target_fd)
        return target_fd.takeError();
    if (*target_fd < 0) {
        int err = static_cast<int>(-*target_fd);
        return makeError(err, "userfaultfd() inside pid " + pid + " failed: " +
                                  std::strerror(err) +
                                  (err == EPERM || err == EACCES
                                       ? " (seccomp is suspended while oohd injects, so a "
                                         "security module's policy refused it)"
                                       : ""));
    }
    UniqueFD uffd(static_cast<int>(
        ::syscall(SYS_pidfd_getfd, target.pidfd(), static_cast<int>(*target_fd), 0)));
    int getfd_errno = errno;
    // Whatever happened, the target must not keep its copy.
    auto closed = remote->call(SYS_close, static_cast<uint64_t>(*target_fd));
    auto released = remote->release();
    auto stopped_us = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now() - t0)
                          .count();
    if (!uffd.isValid())
        return Error::fromErrno(getfd_errno, "pidfd_getfd of the userfaultfd of pid " + pid);
    if (!closed)
        return closed.takeError();
    if (!released)
        return released.takeError();
    OOH_LOG(kLog, Info) << "pid " << pid << ": userfaultfd injected, target stopped for "
                        << stopped_us << " us";

    OOH_TRY(uffdApi(uffd.get(), features_));
    // Through the directory oohd opened the target by: its own files,
    // whatever became of its pid since (ESRCH once it has exited).
    auto pagemap = target.openFile("pagemap", O_RDONLY);
    if (!pagemap)
        return pagemap.takeError();
    auto maps = target.openFile("maps", O_RDONLY);
    if (!maps)
        return maps.takeError();

    auto tracker = std::make_unique<UffdWpTracker>(target.pid(), std::move(uffd),
                                                   std::move(*pagemap), std::move(*maps),
                                                   features_ & UFFD_FEATURE_EVENT_REMOVE);
    OOH_TRY(tracker->adoptUncovered(nullptr));
    return std::unique_ptr<Tracker>(std::move(tracker));
}

} // namespace ooh

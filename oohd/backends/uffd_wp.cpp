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
// What the scan cannot see (new mappings, discards, shared mappings), and
// how it is covered: common/uffd_wp_space.h, shared with libooh's
// self-tracking.
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
#include "uffd_wp_scan.h"
#include "uffd_wp_space.h"

#include <chrono>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/utsname.h>

namespace ooh {

namespace {

constexpr const char *kLog = "uffd-wp";
constexpr uint64_t kRequiredFeatures = UffdWpSpace::kRequiredFeatures;
constexpr uint64_t kWantedFeatures = UffdWpSpace::kWantedFeatures;

class UffdWpTracker final : public Tracker {
public:
    UffdWpTracker(pid_t pid, UniqueFD uffd, UniqueFD pagemap, UniqueFD maps, bool remove_events)
        : pid_(pid), uffd_(std::move(uffd)), pagemap_(std::move(pagemap)), maps_(std::move(maps)),
          remove_events_(remove_events),
          space_(uffd_.get(), pagemap_.get(), maps_.get(), "pid " + std::to_string(pid),
                 [](const std::string &notice) { OOH_LOG(kLog, Info) << notice; })
    {
    }

    // Registers and arms every mapping (at track time).
    Result<void> start()
    {
        auto adopted = space_.adopt(0, userAddressLimit(), nullptr);
        if (!adopted && adopted.error().code == EBUSY)
            return makeError(EBUSY, adopted.error().message +
                                        ", so the uffd-wp backend cannot track this process "
                                        "(try another backend with --backend)");
        return adopted;
    }

    Result<void> collect(std::vector<PageRange> &out) override
    {
        OOH_TRY(handleEvents());
        OOH_TRY(space_.collect(0, userAddressLimit(), out));
        space_.takeRemoved(out);
        return {};
    }
    int eventFd() const override { return remove_events_ ? uffd_.get() : -1; }
    Result<void> handleEvents() override;
    uint64_t trackedBytes() const override { return space_.trackedBytes(); }
    // A discard reads as unwritten: only its event tells.
    bool reportsDiscards() const override { return remove_events_; }

private:
    pid_t pid_;
    UniqueFD uffd_;
    UniqueFD pagemap_;
    UniqueFD maps_;
    bool remove_events_;
    UffdWpSpace space_;
};

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
            return Error::fromErrno(errno,
                                    "read userfaultfd events of pid " + std::to_string(pid_));
        }
        for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(msgs[0]); ++i) {
            if (msgs[i].event == UFFD_EVENT_REMOVE)
                space_.noteRemoved(msgs[i].arg.remove.start, msgs[i].arg.remove.end);
        }
    }
}

std::string kernelRelease()
{
    struct utsname u;
    return ::uname(&u) == 0 ? u.release : "unknown";
}

} // namespace

BackendProbe UffdWpBackend::probe()
{
    features_ = 0; // until the self-test passes: track() refuses
    BackendProbe p;
    UniqueFD uffd(
        static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)));
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
    const uint64_t features = api.features & kWantedFeatures;

    // End-to-end self-test on our own memory: arm, write one page, scan.
    UniqueFD self_uffd(
        static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)));
    UniqueFD pagemap(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    void *mem =
        ::mmap(nullptr, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!self_uffd.isValid() || !pagemap.isValid() || mem == MAP_FAILED) {
        p.reason = std::string("self-test setup failed: ") + std::strerror(errno);
        if (mem != MAP_FAILED)
            ::munmap(mem, 4 * page);
        return p;
    }
    auto base = reinterpret_cast<uint64_t>(mem);
    std::string failure;
    if (!uffdEnable(self_uffd.get(), kRequiredFeatures))
        failure = "UFFDIO_API with WP_ASYNC failed";
    else if (int err = uffdRegisterWp(self_uffd.get(), base, base + 4 * page); err < 0)
        failure = std::string("UFFDIO_REGISTER (WP) failed: ") + std::strerror(-err);
    else {
        static_cast<volatile char *>(mem)[0] = 1; // written before arming
        PagemapScanner scanner(16);
        std::vector<PageRange> found;
        auto armed = collectWritten(scanner, pagemap.get(), base, base + 4 * page, false, found);
        if (!armed) {
            failure = armed.error().code == ENOTTY
                          ? "kernel " + kernelRelease() + " lacks PAGEMAP_SCAN (Linux >= 6.7)"
                          : armed.error().message;
        } else {
            static_cast<volatile char *>(mem)[2 * page] = 1;
            found.clear();
            auto r = collectWritten(scanner, pagemap.get(), base, base + 4 * page, false, found);
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
    features_ = features;
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
        return makeError(err, "userfaultfd() inside pid " + pid + " failed: " + std::strerror(err) +
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
    auto stopped_us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    if (!uffd.isValid())
        return Error::fromErrno(getfd_errno, "pidfd_getfd of the userfaultfd of pid " + pid);
    if (!closed)
        return closed.takeError();
    if (!released)
        return released.takeError();
    OOH_LOG(kLog, Info) << "pid " << pid << ": userfaultfd injected, target stopped for "
                        << stopped_us << " us";

    OOH_TRY(uffdEnable(uffd.get(), features_));
    // Through the directory oohd opened the target by: its own files,
    // whatever became of its pid since (ESRCH once it has exited).
    auto pagemap = target.openFile("pagemap", O_RDONLY);
    if (!pagemap)
        return pagemap.takeError();
    auto maps = target.openFile("maps", O_RDONLY);
    if (!maps)
        return maps.takeError();

    auto tracker =
        std::make_unique<UffdWpTracker>(target.pid(), std::move(uffd), std::move(*pagemap),
                                        std::move(*maps), features_ & UFFD_FEATURE_EVENT_REMOVE);
    OOH_TRY(tracker->start());
    return std::unique_ptr<Tracker>(std::move(tracker));
}

} // namespace ooh

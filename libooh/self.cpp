// SPDX-License-Identifier: Apache-2.0
// libooh self-tracking (include/ooh/self.h): a userfaultfd of the caller's
// own mm and UffdWpSpace (common/) over the ranges it tracks, plus a thread
// that reads the kernel's discard notices. No exception leaves this file.
//
// Collects and the notice thread allocate nothing once tracking is set up:
// a garbage collector collects with its other threads stopped by signals,
// anywhere, inside malloc with its arena lock held too; malloc from the
// collecting thread (or from the notice thread, which a collect waits for)
// could then wait forever.
#include "ooh/self.h"

#include "compat/linux_mm.h"
#include "page_range.h"
#include "pagemap_scan.h"
#include "self_pml.h"
#include "uffd_wp_space.h"
#include "unique_fd.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <mutex>
#include <new>
#include <poll.h>
#include <pthread.h>
#include <string>
#include <sys/eventfd.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <vector>

struct ooh_self {
    pid_t owner = ::getpid(); // the process whose memory this handle tracks
    std::string error;
    ooh::UniqueFD uffd, pagemap, maps;
    ooh::UniqueFD stop; // eventfd: ends the notice thread
    std::unique_ptr<ooh::UffdWpSpace> space;
    std::vector<ooh::PageRange> windows; // tracked ranges, sorted, disjoint
    // Set instead of uffd/space when the dirty bits come from the PML ring.
    std::unique_ptr<ooh::SelfPml> pml;
    const char *backend = "";

    pthread_t notices_thread{};
    bool thread_started = false;

    // Discards (UFFD_EVENT_REMOVE) in fixed arrays, so that neither the
    // notice thread nor a collect allocates. Each is reported in two
    // collects (the zap follows the notice, so one collect may run in
    // between); past kMaxRemoved in an epoch, everything tracked counts as
    // discarded (an over-report).
    static constexpr size_t kMaxRemoved = 64;
    struct Discards {
        ooh::PageRange ranges[kMaxRemoved];
        size_t count = 0;
        bool overflow = false;
        void add(uint64_t start, uint64_t end)
        {
            if (count < kMaxRemoved)
                ranges[count++] = {start, end, true};
            else
                overflow = true;
        }
    };
    std::mutex mu;         // guards `removed`, filled by the notice thread
    Discards removed;      // since the last collect
    Discards removed_prev; // taken by the last collect (reported again)
    // A collect's discards, sorted and merged (both epochs).
    ooh::PageRange discarded[2 * kMaxRemoved];
};

namespace {

int fail(ooh_self *s, int err, const std::string &message)
{
    if (err < 0)
        err = -err;
    if (s)
        s->error = message;
    return -err;
}

int fail(ooh_self *s, const ooh::Error &e) { return fail(s, e.code ? e.code : EIO, e.message); }

std::string kernelRelease()
{
    struct utsname u;
    return ::uname(&u) == 0 ? u.release : "unknown";
}

// Calls from a child of fork() must not touch the parent's state: its
// notice thread does not exist here and its lock may be held forever.
bool forked(ooh_self *s)
{
    if (s->owner == ::getpid())
        return false;
    s->error = "ooh_self_* called in a child of fork(): the child's memory is not tracked by "
               "its parent's handle; ooh_self_close() it and ooh_self_open() a new one";
    return true;
}

// Reads the notices the kernel has queued, under the lock. A thread that
// discards tracked pages (MADV_DONTNEED) waits until its notice is read:
// reading and recording under one lock means that once its madvise()
// returned, a collect (which takes the lock) sees the discard.
void drainNotices(ooh_self *s)
{
    std::lock_guard<std::mutex> lock(s->mu);
    struct uffd_msg msgs[16];
    for (;;) {
        ssize_t n = ::read(s->uffd.get(), msgs, sizeof(msgs));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; // EAGAIN: nothing queued
        for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(msgs[0]); ++i)
            if (msgs[i].event == UFFD_EVENT_REMOVE)
                s->removed.add(msgs[i].arg.remove.start, msgs[i].arg.remove.end);
    }
}

// Reads the kernel's notices as they come, until `stop` is signalled.
void *readNotices(void *arg)
{
    auto *s = static_cast<ooh_self *>(arg);
    struct pollfd fds[2] = {{s->uffd.get(), POLLIN, 0}, {s->stop.get(), POLLIN, 0}};
    for (;;) {
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return nullptr;
        }
        if (fds[1].revents)
            return nullptr;
        drainNotices(s);
    }
}

int openUffdHandle(ooh_self *s);

int openUffd(ooh_self *s)
{
    auto create = [] {
        return ooh::UniqueFD(static_cast<int>(
            ::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)));
    };
    ooh::UniqueFD probe = create();
    if (!probe.isValid()) {
        int err = errno;
        if (err == ENOSYS)
            return fail(s, ENOTSUP, "kernel built without userfaultfd (CONFIG_USERFAULTFD)");
        return fail(s, err,
                    std::string("userfaultfd() refused: ") + std::strerror(err) +
                        " (seccomp policy or a security module)");
    }
    // UFFDIO_API with no features reports which exist.
    struct uffdio_api api = {};
    api.api = UFFD_API;
    if (::ioctl(probe.get(), UFFDIO_API, &api) < 0)
        return fail(s, errno, std::string("UFFDIO_API: ") + std::strerror(errno));
    const uint64_t wanted = ooh::UffdWpSpace::kWantedFeatures;
    if ((api.features & wanted) != wanted)
        return fail(s, ENOTSUP,
                    "kernel " + kernelRelease() +
                        " lacks async userfaultfd write-protect (UFFD_FEATURE_WP_ASYNC, Linux >= "
                        "6.7) or discard events");
    s->uffd = create();
    if (!s->uffd.isValid())
        return fail(s, errno, std::string("userfaultfd(): ") + std::strerror(errno));
    if (auto enabled = ooh::uffdEnable(s->uffd.get(), wanted); !enabled)
        return fail(s, enabled.error());
    return 0;
}

// One collect's output: ranges go to the caller's sink in batches from a
// fixed buffer, ascending within a batch. Discarded ranges are reported
// wholesale and cut out of the others, so that no page is counted twice.
class Collection {
public:
    Collection(ooh_self *s, ooh_self_sink sink, void *ctx)
        : s_(s), sink_(sink), ctx_(ctx), page_(static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)))
    {
    }

    // This epoch's discards and the previous one's, sorted and merged into
    // s->discarded; the epochs move on. Under s->mu.
    void takeDiscards()
    {
        all_discarded_ = s_->removed.overflow || s_->removed_prev.overflow;
        size_t n = 0;
        for (const auto *d : {&s_->removed, &s_->removed_prev})
            for (size_t i = 0; i < d->count; ++i)
                s_->discarded[n++] = d->ranges[i];
        s_->removed_prev = s_->removed;
        s_->removed = {};
        ooh::PageRange *begin = s_->discarded;
        std::sort(begin, begin + n, [](const ooh::PageRange &a, const ooh::PageRange &b) {
            return a.start < b.start;
        });
        discarded_ = 0;
        for (size_t i = 0; i < n; ++i) {
            if (discarded_ && begin[i].start <= begin[discarded_ - 1].end)
                begin[discarded_ - 1].end = std::max(begin[discarded_ - 1].end, begin[i].end);
            else
                begin[discarded_++] = begin[i];
        }
    }

    // A range the scan found, less what was discarded (reported apart).
    void addOutsideDiscards(uint64_t start, uint64_t end, bool wholesale)
    {
        if (all_discarded_)
            return;
        const ooh::PageRange *d = s_->discarded, *d_end = d + discarded_;
        d = std::upper_bound(d, d_end, start,
                             [](uint64_t a, const ooh::PageRange &r) { return a < r.end; });
        uint64_t pos = start;
        for (; d != d_end && d->start < end; ++d) {
            if (d->start > pos)
                add(pos, d->start, wholesale);
            pos = std::max(pos, d->end);
        }
        if (pos < end)
            add(pos, end, wholesale);
    }

    // The discarded parts of the tracked window [start, end).
    void addDiscards(uint64_t start, uint64_t end)
    {
        if (all_discarded_) {
            add(start, end, true);
            return;
        }
        for (size_t i = 0; i < discarded_; ++i)
            add(std::max(start, s_->discarded[i].start), std::min(end, s_->discarded[i].end), true);
    }

    void flush()
    {
        if (n_)
            sink_(ctx_, batch_, n_);
        n_ = 0;
    }

    long pages = 0;

private:
    void add(uint64_t start, uint64_t end, bool wholesale)
    {
        if (start >= end)
            return;
        const uint32_t flags = wholesale ? OOH_RANGE_WHOLESALE : 0u;
        pages += static_cast<long>((end - start) / page_);
        if (n_ && batch_[n_ - 1].end == start && batch_[n_ - 1].flags == flags) {
            batch_[n_ - 1].end = end;
            return;
        }
        if (n_ == kBatch || (n_ && start < batch_[n_ - 1].end))
            flush();
        batch_[n_++] = {start, end, flags, 0};
    }

    static constexpr size_t kBatch = 256;
    ooh_self *s_;
    ooh_self_sink sink_;
    void *ctx_;
    uint64_t page_;
    bool all_discarded_ = false;
    size_t discarded_ = 0; // merged ranges in s_->discarded
    struct ooh_range batch_[kBatch];
    size_t n_ = 0;
};

} // namespace

extern "C" {

int ooh_self_open(ooh_self **out) { return ooh_self_open_backend(out, OOH_SELF_UFFD); }

int ooh_self_open_backend(ooh_self **out, int backend)
{
    if (out)
        *out = nullptr;
    if (backend != OOH_SELF_AUTO && backend != OOH_SELF_UFFD && backend != OOH_SELF_PML)
        return -EINVAL;
    auto *s = new (std::nothrow) ooh_self;
    if (!s)
        return -ENOMEM;
    if (out)
        *out = s;
    int r = backend == OOH_SELF_PML ? -ENOTSUP : openUffdHandle(s);
    if (r < 0 && backend != OOH_SELF_UFFD) {
        std::string uffd_error = s->error;
        ooh::SelfPml *pml = nullptr;
        std::string pml_error;
        r = ooh::SelfPml::open(&pml, &pml_error);
        if (r == 0) {
            s->pml.reset(pml);
            s->backend = "pml";
            s->error.clear();
        } else if (backend == OOH_SELF_AUTO) {
            s->error = "neither userfaultfd write-protect (" + uffd_error + ") nor the PML ring (" +
                       pml_error + ")";
        } else {
            s->error = pml_error;
        }
    }
    if (r < 0 && !out)
        ooh_self_close(s);
    return r;
}
} // extern "C"

namespace {

int openUffdHandle(ooh_self *s)
{
    if (int r = openUffd(s); r < 0)
        return r;
    s->pagemap.reset(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
    s->maps.reset(::open("/proc/self/maps", O_RDONLY | O_CLOEXEC));
    s->stop.reset(::eventfd(0, EFD_CLOEXEC));
    int err = errno;
    int r = 0;
    if (!s->pagemap.isValid() || !s->maps.isValid())
        r = fail(s, err, std::string("open /proc/self/pagemap or maps: ") + std::strerror(err));
    else if (!s->stop.isValid())
        r = fail(s, err, std::string("eventfd: ") + std::strerror(err));
    if (r == 0) {
        // PAGEMAP_SCAN (Linux >= 6.7): one read-only scan of a page of ours.
        ooh::PagemapScanner scanner(1);
        auto here = reinterpret_cast<uint64_t>(&s->owner) &
                    ~static_cast<uint64_t>(::sysconf(_SC_PAGESIZE) - 1);
        std::vector<ooh::PageRange> ignored;
        auto scanned =
            ooh::findUntracked(scanner, s->pagemap.get(), here,
                               here + static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)), ignored);
        if (!scanned)
            r = scanned.error().code == ENOTTY
                    ? fail(s, ENOTSUP,
                           "kernel " + kernelRelease() + " lacks PAGEMAP_SCAN (Linux >= 6.7)")
                    : fail(s, scanned.error());
    }
    if (r == 0) {
        s->space = std::make_unique<ooh::UffdWpSpace>(s->uffd.get(), s->pagemap.get(),
                                                      s->maps.get(), "this process");
        // The notice thread takes no signal: a process-directed one goes to
        // the program's own threads, and its handlers never run here.
        sigset_t all, old;
        ::sigfillset(&all);
        ::pthread_sigmask(SIG_SETMASK, &all, &old);
        int perr = ::pthread_create(&s->notices_thread, nullptr, readNotices, s);
        ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
        if (perr != 0)
            r = fail(s, perr, std::string("starting the notice thread: ") + std::strerror(perr));
        else
            s->thread_started = true;
    }
    if (r < 0) { // a handle that failed to open holds nothing
        s->space.reset();
        s->uffd.reset();
        s->pagemap.reset();
        s->maps.reset();
        s->stop.reset();
    } else
        s->backend = "uffd";
    return r;
}

} // namespace

extern "C" {

void ooh_self_close(ooh_self *s)
{
    if (!s)
        return;
    if (s->thread_started && s->owner == ::getpid()) {
        uint64_t one = 1;
        if (::write(s->stop.get(), &one, sizeof(one)) == sizeof(one))
            ::pthread_join(s->notices_thread, nullptr);
        else
            ::pthread_detach(s->notices_thread);
    }
    // In a child of fork(), the parent's thread does not exist here: the
    // fds (copies) close, and the parent's tracking is untouched.
    if (s->pml && s->owner != ::getpid())
        s->pml->abandon();
    delete s;
}

const char *ooh_self_last_error(const ooh_self *s) { return s ? s->error.c_str() : ""; }

const char *ooh_self_backend(const ooh_self *s) { return s ? s->backend : ""; }

int ooh_self_track(ooh_self *s, void *addr, size_t len)
{
    if (!s)
        return -EINVAL;
    if (forked(s))
        return -ECHILD;
    if (!s->space && !s->pml)
        return fail(s, EBADF, "this handle failed to open: " + s->error);
    const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    const uint64_t start = reinterpret_cast<uint64_t>(addr), end = start + len;
    if (len == 0 || start % page || len % page || end < start)
        return fail(s, EINVAL, "ooh_self_track: the range must be non-empty and page aligned");
    // oohd logs the whole process: a window only selects what is reported.
    if (s->space)
        if (auto adopted = s->space->adopt(start, end, nullptr); !adopted)
            return fail(s, adopted.error());
    s->windows.push_back({start, end, false});
    s->windows = ooh::normalizeRanges(std::move(s->windows));
    return 0;
}

int ooh_self_untrack(ooh_self *s, void *addr, size_t len)
{
    if (!s)
        return -EINVAL;
    if (forked(s))
        return -ECHILD;
    const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    const uint64_t start = reinterpret_cast<uint64_t>(addr), end = start + len;
    if (len == 0 || start % page || len % page || end < start)
        return fail(s, EINVAL, "ooh_self_untrack: the range must be non-empty and page aligned");
    // Unregistered mappings in the range are skipped by the kernel.
    if (s->space)
        if (int err = ooh::uffdUnregister(s->uffd.get(), start, end); err < 0 && err != -EINVAL)
            return fail(s, err, std::string("UFFDIO_UNREGISTER: ") + std::strerror(-err));
    std::vector<ooh::PageRange> kept;
    for (const auto &w : s->windows) {
        if (w.start < start)
            kept.push_back({w.start, std::min(w.end, start), false});
        if (w.end > end)
            kept.push_back({std::max(w.start, end), w.end, false});
    }
    s->windows = std::move(kept);
    return 0;
}

long ooh_self_collect(ooh_self *s, ooh_self_sink sink, void *ctx)
{
    if (!s || !sink)
        return -EINVAL;
    if (forked(s))
        return -ECHILD;
    if (s->pml) {
        long pages = s->pml->collect(s->windows, sink, ctx, &s->error);
        return pages;
    }
    if (!s->space)
        return fail(s, EBADF, "this handle failed to open: " + s->error);
    drainNotices(s);
    Collection c(s, sink, ctx);
    {
        std::lock_guard<std::mutex> lock(s->mu);
        c.takeDiscards();
    }
    // The lambda holds one pointer: std::function keeps it in place.
    const ooh::RangeSink found = [pc = &c](uint64_t start, uint64_t end, bool wholesale) {
        pc->addOutsideDiscards(start, end, wholesale);
    };
    for (const auto &w : s->windows) {
        if (auto r = s->space->collect(w.start, w.end, found); !r)
            return fail(s, r.error());
        c.addDiscards(w.start, w.end);
    }
    c.flush();
    return c.pages;
}

} // extern "C"

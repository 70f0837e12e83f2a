// SPDX-License-Identifier: Apache-2.0
// ooh-guest-check: the test driver that runs inside the VM. Each subcommand
// checks one thing and prints one result line that the host parses:
//   OOH-RESULT <name> PASS|FAIL|SKIP <detail>
// plus "OOH-BENCH ..." lines with ratios for bench/vm.
#include "backend.h"
#include "exact_pages.h"
#include "page_range.h"
#include "pml_ring.h"
#include "soft_dirty.h"
#include "target.h"
#include "thread_stop.h"
#include "uffd_wp.h"
#include "writer_truth.h"

#include "ooh/ooh.hpp"
#include "ooh/ooh_ring.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace ooh;

namespace {

const uint64_t kPage = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));

int result(const std::string &name, const char *verdict, const std::string &detail)
{
    std::printf("OOH-RESULT %s %s %s\n", name.c_str(), verdict, detail.c_str());
    std::fflush(stdout);
    return std::strcmp(verdict, "FAIL") == 0 ? 1 : 0;
}

// A child that sleeps until killed; the target of the ring tests.
pid_t spawnSleeper()
{
    pid_t pid = fork();
    if (pid == 0) {
        for (;;)
            pause();
    }
    return pid;
}

void reap(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
}

struct Track {
    int ctl = -1;
    ooh_track_req req = {};
    int err = 0;
};

Track trackPid(pid_t pid, int mem_fd, uint32_t mode = OOH_MODE_SPML, uint32_t entries = 0)
{
    Track t;
    t.ctl = open(OOH_CTL_DEVICE, O_RDWR | O_CLOEXEC);
    if (t.ctl < 0) {
        t.err = errno;
        return t;
    }
    t.req.size = sizeof(t.req);
    t.req.mode = mode;
    t.req.pid = pid;
    t.req.mem_fd = mem_fd;
    t.req.ring_entries = entries;
    if (ioctl(t.ctl, OOH_IOC_TRACK, &t.req) != 0)
        t.err = errno;
    return t;
}

int openMem(pid_t pid)
{
    return open(("/proc/" + std::to_string(pid) + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
}

// /dev/ooh-ctl, OOH_IOC_INFO, one tracker's ring through UIO, collect, close.
int cmdRing()
{
    const std::string name = "ring";
    int ctl = open(OOH_CTL_DEVICE, O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return result(name, "FAIL", std::string("open " OOH_CTL_DEVICE ": ") + strerror(errno));
    ooh_info info = {};
    info.size = sizeof(info);
    if (ioctl(ctl, OOH_IOC_INFO, &info) != 0 || info.abi_version != OOH_ABI_VERSION ||
        !(info.transports & OOH_TRANSPORT_EMULATED))
        return result(name, "FAIL", "OOH_IOC_INFO: no emulated transport");
    close(ctl);

    pid_t child = spawnSleeper();
    int mem = openMem(child);
    Track t = trackPid(child, mem);
    if (t.err) {
        reap(child);
        return result(name, "FAIL", std::string("OOH_IOC_TRACK: ") + strerror(t.err));
    }
    std::string sys = "/sys/class/uio/uio" + std::to_string(t.req.uio_index) + "/name";
    std::string uio = oohUioDevicePath(t.req.uio_index);
    std::string fail;
    int fd = uio.empty() ? -1 : open(uio.c_str(), O_RDWR | O_CLOEXEC);
    void *map = fd < 0 ? MAP_FAILED
                       : mmap(nullptr, t.req.ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        fail = "cannot map the ring of " + sys;
    } else {
        auto *hdr = static_cast<ooh_ring_header *>(map);
        ooh_collect_req c = {};
        c.size = sizeof(c);
        if (hdr->magic != OOH_RING_MAGIC || hdr->capacity != OOH_RING_DEFAULT_ENTRIES ||
            hdr->pid != child || hdr->mode != OOH_MODE_SPML || hdr->threads != 1)
            fail = "bad ring header";
        else if (ioctl(t.ctl, OOH_IOC_COLLECT, &c) != 0 || hdr->collects != 1)
            fail = std::string("OOH_IOC_COLLECT: ") + strerror(errno);
        else {
            // One tracker per fd.
            ooh_track_req again = t.req;
            again.mem_fd = mem;
            if (ioctl(t.ctl, OOH_IOC_TRACK, &again) == 0 || errno != EBUSY)
                fail = "second OOH_IOC_TRACK on one fd was not EBUSY";
        }
        munmap(map, t.req.ring_bytes);
    }
    if (fd >= 0)
        close(fd);
    close(t.ctl);
    close(mem);
    // Closing the fd removes the tracker's UIO device.
    struct stat st;
    if (fail.empty() && stat(sys.c_str(), &st) == 0)
        fail = sys + " still there after close";
    reap(child);
    if (!fail.empty())
        return result(name, "FAIL", fail);
    return result(name, "PASS", std::string("transport '") + info.transport + "', ring on " + uio);
}

// Who may track whom.
int cmdPermission()
{
    const std::string name = "permission";
    pid_t a = spawnSleeper(), b = spawnSleeper();
    std::string fail;

    int mem_b = openMem(b);
    Track t = trackPid(a, mem_b); // a's pid with b's mem fd
    if (t.err != EPERM)
        fail = "another process's mem fd: got " + std::string(strerror(t.err)) + ", want EPERM";
    close(t.ctl);

    int environ_fd =
        open(("/proc/" + std::to_string(a) + "/environ").c_str(), O_RDONLY | O_CLOEXEC);
    t = trackPid(a, environ_fd); // holds a's mm too, but is no ptrace proof
    if (fail.empty() && t.err != EPERM)
        fail = "environ fd: got " + std::string(strerror(t.err)) + ", want EPERM";
    close(t.ctl);

    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    t = trackPid(a, devnull);
    if (fail.empty() && t.err != EPERM)
        fail = "/dev/null as mem fd: got " + std::string(strerror(t.err)) + ", want EPERM";
    close(t.ctl);

    reap(b);
    t = trackPid(b, mem_b); // b is gone
    if (fail.empty() && t.err != ESRCH)
        fail = "exited pid: got " + std::string(strerror(t.err)) + ", want ESRCH";
    close(t.ctl);

    // An unprivileged user cannot even open the control device.
    pid_t user = fork();
    if (user == 0) {
        if (setgid(65534) || setuid(65534))
            _exit(3);
        int fd = open(OOH_CTL_DEVICE, O_RDWR);
        _exit(fd < 0 && errno == EACCES ? 0 : 1);
    }
    int status = 0;
    waitpid(user, &status, 0);
    if (fail.empty() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        fail = "user 65534 could open " OOH_CTL_DEVICE;

    // Real credentials count: a caller whose real uid is not the target's
    // and who lacks CAP_SYS_PTRACE is refused, even with a mem fd it could
    // open (procfs checks the fs credentials, which are still root's).
    pid_t realcreds = fork();
    if (realcreds == 0) {
        // Without CAP_SYS_PTRACE in any set (so that procfs' capability
        // check still passes for a target with no more than ours)...
        __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
        __user_cap_data_struct data[2] = {};
        if (syscall(SYS_capget, &hdr, data))
            _exit(3);
        data[CAP_SYS_PTRACE / 32].effective &= ~(1u << (CAP_SYS_PTRACE % 32));
        data[CAP_SYS_PTRACE / 32].permitted &= ~(1u << (CAP_SYS_PTRACE % 32));
        if (syscall(SYS_capset, &hdr, data))
            _exit(3);
        pid_t own = spawnSleeper(); // a descendant, so that Yama allows the mem fd
        // ...and with another real uid, the fs credentials staying root's.
        if (setresuid(65534, 0, 0))
            _exit(3);
        int mem = openMem(own);
        if (mem < 0) {
            reap(own);
            _exit(4);
        }
        Track tr = trackPid(own, mem);
        reap(own);
        _exit(tr.err == EPERM ? 0 : 1);
    }
    waitpid(realcreds, &status, 0);
    if (fail.empty() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        fail = "real uid 65534 without CAP_SYS_PTRACE was not refused (child status " +
               std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")";

    int mem_a = openMem(a);
    t = trackPid(a, mem_a);
    if (fail.empty() && t.err)
        fail = std::string("root with the right mem fd: ") + strerror(t.err);
    close(t.ctl);
    close(mem_a);
    close(mem_b);
    close(environ_fd);
    close(devnull);
    reap(a);
    if (!fail.empty())
        return result(name, "FAIL", fail);
    return result(name, "PASS",
                  "wrong mem fd, environ fd, non-proc fd: EPERM; exited: ESRCH; "
                  "user 65534: EACCES; real uid 65534 without CAP_SYS_PTRACE: "
                  "EPERM; right mem fd: tracked");
}

std::unique_ptr<Backend> makeBackend(const std::string &name, const std::string &mode)
{
    if (name == "pml-ring")
        return std::make_unique<PmlRingBackend>(mode == "epml" ? PmlRingBackend::Mode::Epml
                                                               : PmlRingBackend::Mode::Spml);
    if (name == "soft-dirty")
        return std::make_unique<SoftDirtyBackend>();
    if (name == "uffd-wp")
        return std::make_unique<UffdWpBackend>();
    return nullptr;
}

// Talks to ooh-dirty-writer over pipes.
struct Writer {
    pid_t pid = -1;
    FILE *in = nullptr;
    FILE *out = nullptr;

    bool start(const std::string &path)
    {
        int to[2], from[2];
        if (pipe(to) || pipe(from))
            return false;
        pid = fork();
        if (pid == 0) {
            dup2(to[0], 0);
            dup2(from[1], 1);
            close(to[1]);
            close(from[0]);
            execl(path.c_str(), path.c_str(), "--fifo-dir", "/tmp", nullptr);
            _exit(127);
        }
        close(to[0]);
        close(from[1]);
        in = fdopen(to[1], "w");
        out = fdopen(from[0], "r");
        char line[256];
        return fgets(line, sizeof(line), out) && std::strncmp(line, "ready", 5) == 0;
    }

    // Runs one round; fills what the writer did.
    bool round(uint64_t seed, test::GroundTruth &truth)
    {
        std::fprintf(in, "round %" PRIu64 "\n", seed);
        std::fflush(in);
        char line[256];
        while (fgets(line, sizeof(line), out)) {
            test::WriterLine kind = test::parseWriterLine(line, &truth);
            if (kind != test::WriterLine::Record)
                return kind == test::WriterLine::End;
        }
        return false;
    }

    ~Writer()
    {
        if (in) {
            std::fprintf(in, "exit\n");
            std::fclose(in);
        }
        if (out)
            std::fclose(out);
        if (pid > 0)
            waitpid(pid, nullptr, 0);
    }
};

bool covered(const std::vector<PageRange> &ranges, uint64_t page)
{
    auto it = std::upper_bound(ranges.begin(), ranges.end(), page,
                               [](uint64_t p, const PageRange &r) { return p < r.start; });
    return it != ranges.begin() && std::prev(it)->end > page;
}

// Pages of `pid` present or swapped now (sorted), and its shared mappings.
struct Residency {
    std::vector<uint64_t> resident;
    std::vector<std::pair<uint64_t, uint64_t>> shared;

    bool isResident(uint64_t p) const
    {
        return std::binary_search(resident.begin(), resident.end(), p);
    }
    bool isShared(uint64_t p) const
    {
        return std::any_of(shared.begin(), shared.end(),
                           [&](auto &r) { return p >= r.first && p < r.second; });
    }
};

Residency residency(pid_t pid)
{
    Residency out;
    std::string proc = "/proc/" + std::to_string(pid);
    FILE *maps = std::fopen((proc + "/maps").c_str(), "r");
    int pm = open((proc + "/pagemap").c_str(), O_RDONLY | O_CLOEXEC);
    char line[512];
    while (maps && pm >= 0 && std::fgets(line, sizeof(line), maps)) {
        unsigned long long start, end;
        char perms[8];
        if (std::sscanf(line, "%llx-%llx %7s", &start, &end, perms) != 3)
            continue;
        if (perms[3] == 's')
            out.shared.push_back({start, end});
        if (std::strstr(line, "[vsyscall]"))
            continue;
        std::vector<uint64_t> buf((end - start) / kPage);
        if (pread(pm, buf.data(), buf.size() * 8, static_cast<off_t>(start / kPage * 8)) !=
            static_cast<ssize_t>(buf.size() * 8))
            continue;
        for (size_t i = 0; i < buf.size(); ++i)
            if (buf[i] & (3ull << 62))
                out.resident.push_back(start + i * kPage);
    }
    if (maps)
        std::fclose(maps);
    if (pm >= 0)
        close(pm);
    std::sort(out.resident.begin(), out.resident.end());
    return out;
}

// The ground truth: every page the writer wrote or discarded is reported,
// except where its contents cannot have changed since the previous collect:
// a page of a private mapping that was not resident then (zero, or the file's)
// and is not resident now, or that was only discarded and not resident then.
// PML logs frames and virtual pages, not discards: such a page may go
// unreported without any checkpoint ever differing.
using Collect = std::function<Result<void>(std::vector<PageRange> &)>;

int checkRounds(const std::string &name, const std::string &backend_name, const std::string &mode,
                Writer &w, const Collect &collect, int rounds);

// Reads a tracker's events as they come, as oohd's event loop does: a
// target blocks in madvise() until its discard event (uffd-wp) is read.
class EventPump {
public:
    explicit EventPump(Tracker &t) : tracker_(t)
    {
        if (t.eventFd() >= 0)
            thread_ = std::thread([this] { run(); });
    }
    ~EventPump()
    {
        stop_ = true;
        if (thread_.joinable())
            thread_.join();
    }
    Result<void> collect(std::vector<PageRange> &out)
    {
        std::lock_guard lock(mutex_);
        OOH_TRY(failed_);
        return tracker_.collect(out);
    }

private:
    void run()
    {
        while (!stop_) {
            struct pollfd pfd = {tracker_.eventFd(), POLLIN, 0};
            if (::poll(&pfd, 1, 10) > 0) {
                std::lock_guard lock(mutex_);
                if (auto r = tracker_.handleEvents(); !r && failed_)
                    failed_ = makeError(r.error().code, "events: " + r.error().message);
            }
        }
    }
    Tracker &tracker_;
    std::mutex mutex_;
    Result<void> failed_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// Through the backend in this process.
int cmdGroundTruth(const std::string &name, const std::string &backend_name,
                   const std::string &mode, const std::string &writer_path, int rounds)
{
    auto backend = makeBackend(backend_name, mode);
    if (!backend)
        return result(name, "FAIL", "unknown backend " + backend_name);
    BackendProbe probe = backend->probe();
    if (!probe.available)
        return result(name, "FAIL", backend_name + " unavailable: " + probe.reason);
    Writer w;
    if (!w.start(writer_path))
        return result(name, "FAIL", "cannot start " + writer_path);
    auto proc = Target::open(w.pid);
    if (!proc)
        return result(name, "FAIL", proc.error().message);
    auto tracker = backend->track(*proc);
    if (!tracker)
        return result(name, "FAIL", "track: " + tracker.error().message);
    EventPump pump(**tracker);
    return checkRounds(
        name, backend_name, mode, w, [&](std::vector<PageRange> &got) { return pump.collect(got); },
        rounds);
}

// Through oohd and libooh, with the backend the daemon chooses.
int cmdGroundTruthDaemon(const std::string &name, const std::string &socket,
                         const std::string &expect_backend, const std::string &writer_path,
                         int rounds)
{
    Client client;
    if (client.connect(socket.c_str()) < 0)
        return result(name, "FAIL", "connect to oohd: " + client.error());
    std::vector<ooh_backend_info> infos(8);
    long n = ooh_backends(client.get(), infos.data(), infos.size());
    std::string chosen;
    for (long i = 0; i < n && i < 8; ++i)
        if (infos[i].is_default)
            chosen = infos[i].name;
    if (chosen != expect_backend)
        return result(name, "FAIL",
                      "oohd's default backend is '" + chosen + "', expected '" + expect_backend +
                          "'");
    Writer w;
    if (!w.start(writer_path))
        return result(name, "FAIL", "cannot start " + writer_path);
    if (client.track(w.pid) < 0)
        return result(name, "FAIL", "track: " + client.error());
    return checkRounds(
        name, "oohd-" + chosen, "-", w,
        [&](std::vector<PageRange> &got) -> Result<void> {
            std::vector<ooh_range> ranges;
            if (int r = client.collect(w.pid, ranges); r < 0)
                return makeError(r, "collect: " + client.error());
            for (const auto &g : ranges)
                got.push_back({g.start, g.end, (g.flags & OOH_RANGE_WHOLESALE) != 0});
            return {};
        },
        rounds);
}

int checkRounds(const std::string &name, const std::string &backend_name, const std::string &mode,
                Writer &w, const Collect &collect, int rounds)
{
    uint64_t written = 0, reported_exact = 0, reported_whole = 0, wholesale_rounds = 0;
    uint64_t unchanged = 0, allowed_whole = 0;
    std::vector<PageRange> last_discarded;
    Residency before = residency(w.pid);
    for (int r = 1; r <= rounds; ++r) {
        test::GroundTruth truth;
        if (!w.round(1000 + static_cast<uint64_t>(r), truth))
            return result(name, "FAIL", "writer stopped in round " + std::to_string(r));
        std::vector<PageRange> got;
        auto c = collect(got);
        if (!c)
            return result(name, "FAIL", "collect: " + c.error().message);
        got = normalizeRanges(std::move(got));
        bool whole = false;
        for (const auto &g : got) {
            (g.wholesale ? reported_whole : reported_exact) += g.bytes() / kPage;
            whole |= g.wholesale;
        }
        wholesale_rounds += whole;
        // Over-reporting, the wholesale half: only what the writer mapped,
        // moved, grew, discarded or shares may be reported whole.
        auto bound = test::boundWholesale(got, truth, last_discarded, kPage);
        if (bound.outside_pages)
            return result(name, "FAIL",
                          "round " + std::to_string(r) + ": " + test::describe(bound));
        allowed_whole += bound.allowed_pages;
        last_discarded = truth.discarded;
        Residency now = residency(w.pid);
        std::vector<uint64_t> writes;
        for (const auto &t : truth.written)
            writes.push_back(t.start);
        std::sort(writes.begin(), writes.end());
        // Written pages, then discarded ones (marked wholesale, for messages).
        std::vector<PageRange> touched = truth.written;
        for (PageRange d : truth.discarded) {
            d.wholesale = true;
            touched.push_back(d);
        }
        for (const auto &t : touched) {
            for (uint64_t p = t.start; p < t.end; p += kPage) {
                ++written;
                if (!covered(got, p)) {
                    bool was = before.isResident(p), is = now.isResident(p);
                    bool only_discarded = !std::binary_search(writes.begin(), writes.end(), p);
                    if (!now.isShared(p) && !was && (!is || only_discarded)) {
                        ++unchanged;
                        continue;
                    }
                    // Where the page lives now, to tell lost logs from lost frames.
                    uint64_t entry = 0;
                    int pm = open(("/proc/" + std::to_string(w.pid) + "/pagemap").c_str(),
                                  O_RDONLY | O_CLOEXEC);
                    if (pm >= 0 && pread(pm, &entry, 8, static_cast<off_t>(p / kPage * 8)) != 8)
                        entry = 0;
                    if (pm >= 0)
                        close(pm);
                    char detail[200];
                    std::snprintf(detail, sizeof(detail),
                                  "round %d: page %#" PRIx64
                                  " %s but not reported (pagemap %#" PRIx64
                                  ", %zu ranges reported)",
                                  r, p, t.wholesale ? "discarded" : "written", entry, got.size());
                    return result(name, "FAIL", detail);
                }
            }
        }
        before = std::move(now);
    }
    char detail[320];
    std::snprintf(detail, sizeof(detail),
                  "%d rounds, %" PRIu64 " pages written or discarded, all reported but %" PRIu64
                  " unchanged since the last collect (%" PRIu64 " exact + %" PRIu64
                  " wholesale pages reported, %" PRIu64 " rounds wholesale, %" PRIu64
                  " pages allowed wholesale)",
                  rounds, written, unchanged, reported_exact, reported_whole, wholesale_rounds,
                  allowed_whole);
    std::printf("OOH-BENCH groundtruth %s %s rounds=%d written=%" PRIu64 " exact=%" PRIu64
                " wholesale=%" PRIu64 " wholesale_rounds=%" PRIu64 "\n",
                backend_name.c_str(), mode.empty() ? "-" : mode.c_str(), rounds, written,
                reported_exact, reported_whole, wholesale_rounds);
    return result(name, "PASS", detail);
}

// In the manner of the kernel's pagemap_ioctl.c (tests/exact_pages.h): in
// a tracked mapping (small pages, then one made while tracked; or huge
// pages), write chosen pages, expect exactly those (none wholesale), then
// nothing.
int cmdExact(const std::string &name, const std::string &backend_name, const std::string &mode,
             bool huge)
{
    auto backend = makeBackend(backend_name, mode);
    if (!backend)
        return result(name, "FAIL", "unknown backend " + backend_name);
    BackendProbe probe = backend->probe();
    if (!probe.available)
        return result(name, "FAIL", backend_name + " unavailable: " + probe.reason);
    test::PageToucher toucher;
    bool skip = false;
    if (std::string err = test::startToucher(toucher, huge, &skip); !err.empty())
        return result(name, skip ? "SKIP" : "FAIL", err);
    auto proc = Target::open(toucher.pid());
    if (!proc)
        return result(name, "FAIL", proc.error().message);
    auto tracker = backend->track(*proc);
    if (!tracker)
        return result(name, "FAIL", "track: " + tracker.error().message);
    test::ExactCollect collect = [&]() -> Result<std::vector<PageRange>> {
        std::vector<PageRange> got;
        OOH_TRY((*tracker)->collect(got));
        return got;
    };
    if (auto first = collect(); !first)
        return result(name, "FAIL", "first collect: " + first.error().message);
    std::string done;
    std::string diff =
        test::runExactPages(toucher, collect, test::hugeGranule(backend_name, kPage), &done);
    if (!diff.empty())
        return result(name, "FAIL", diff);
    return result(name, "PASS", "exactly the pages written, then none: " + done);
}

// A child that writes `pages` pages of a fresh mapping each time it reads a
// byte from its pipe, and answers with the mapping's address.
struct Burster {
    pid_t pid = -1;
    int cmd = -1, ans = -1;

    // stream: each burst writes the next n pages (cyclically) instead of
    // the first n, so that every burst logs new pages within one epoch.
    bool start(uint64_t pages, bool stream = false)
    {
        int a[2], b[2];
        if (pipe(a) || pipe(b))
            return false;
        pid = fork();
        if (pid == 0) {
            auto *mem = static_cast<volatile uint8_t *>(
                mmap(nullptr, pages * kPage, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0));
            char n;
            uint64_t round = 0, cursor = 0;
            while (read(a[0], &n, 1) == 1) {
                ++round;
                uint64_t count = static_cast<uint8_t>(n) == 255 ? pages : static_cast<uint8_t>(n);
                uint64_t first = stream ? cursor : 0;
                for (uint64_t p = 0; p < count; ++p)
                    mem[((first + p) % pages) * kPage + (round % 64)] = static_cast<uint8_t>(round);
                cursor = (first + count) % pages;
                uintptr_t base = reinterpret_cast<uintptr_t>(mem);
                if (write(b[1], &base, sizeof(base)) != sizeof(base))
                    _exit(1);
            }
            _exit(0);
        }
        cmd = a[1];
        ans = b[0];
        return true;
    }

    // Writes the first n pages (255 = all); returns the mapping's address.
    uintptr_t burst(uint8_t n)
    {
        uintptr_t base = 0;
        if (write(cmd, &n, 1) != 1 || read(ans, &base, sizeof(base)) != sizeof(base))
            return 0;
        return base;
    }

    ~Burster()
    {
        close(cmd);
        close(ans);
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
        }
    }
};

// A burst larger than the ring: reported wholesale, never silently short.
int cmdOverflow(const std::string &mode)
{
    const std::string name = "overflow-" + mode;
    const uint64_t pages = 4096;
    setenv("OOH_RING_ENTRIES", "512", 1);
    PmlRingBackend backend(mode == "epml" ? PmlRingBackend::Mode::Epml
                                          : PmlRingBackend::Mode::Spml);
    if (!backend.probe().available)
        return result(name, "FAIL", "pml-ring backend unavailable");
    Burster b;
    if (!b.start(pages))
        return result(name, "FAIL", "fork");
    b.burst(0); // the child has mapped and populated its memory
    auto proc = Target::open(b.pid);
    if (!proc)
        return result(name, "FAIL", proc.error().message);
    auto tracker = backend.track(*proc);
    unsetenv("OOH_RING_ENTRIES");
    if (!tracker)
        return result(name, "FAIL", "track: " + tracker.error().message);
    std::vector<PageRange> got;
    if (auto c = (*tracker)->collect(got); !c)
        return result(name, "FAIL", "first collect: " + c.error().message);

    // Small write: exact. Burst of every page: wholesale. Small again: exact.
    struct Step {
        uint8_t n;
        const char *what;
    } steps[] = {{16, "small"}, {255, "burst"}, {16, "after"}};
    std::string detail;
    for (const Step &s : steps) {
        uintptr_t base = b.burst(s.n);
        uint64_t n = s.n == 255 ? pages : s.n;
        got.clear();
        if (auto c = (*tracker)->collect(got); !c)
            return result(name, "FAIL", std::string(s.what) + " collect: " + c.error().message);
        got = normalizeRanges(std::move(got));
        bool whole = std::any_of(got.begin(), got.end(), [](auto &r) { return r.wholesale; });
        for (uint64_t p = 0; p < n; ++p)
            if (!covered(got, base + p * kPage))
                return result(name, "FAIL",
                              std::string(s.what) + ": page " + std::to_string(p) +
                                  " not reported");
        uint64_t reported = countPages(got, kPage);
        std::printf("OOH-BENCH overflow ooh %s step=%s ring=512 written=%" PRIu64
                    " reported=%" PRIu64 " wholesale=%d\n",
                    mode.c_str(), s.what, n, reported, whole);
        if (s.n == 255 && !whole)
            return result(name, "FAIL",
                          "a burst of 4096 pages into a 512-entry ring was not "
                          "reported as lost");
        detail += std::string(s.what) + ": " + std::to_string(n) + " written, " +
                  std::to_string(reported) + (whole ? " reported wholesale; " : " reported; ");
    }
    return result(name, "PASS", detail);
}

// A stopped target: tracking starts without waiting for it (it attaches
// its threads when it resumes, before running any user code) and its writes
// after SIGCONT are reported.
int cmdStopped()
{
    const std::string name = "stopped-target";
    PmlRingBackend backend(PmlRingBackend::Mode::Spml);
    if (!backend.probe().available)
        return result(name, "FAIL", "pml-ring backend unavailable");
    Burster b;
    if (!b.start(64))
        return result(name, "FAIL", "fork");
    uintptr_t base = b.burst(0);
    kill(b.pid, SIGSTOP);
    int status = 0;
    waitpid(b.pid, &status, WUNTRACED);
    auto proc = Target::open(b.pid);
    if (!proc)
        return result(name, "FAIL", proc.error().message);
    auto tracker = backend.track(*proc);
    if (!tracker)
        return result(name, "FAIL", "track of a stopped process: " + tracker.error().message);
    std::vector<PageRange> got;
    if (auto c = (*tracker)->collect(got); !c)
        return result(name, "FAIL", "collect while stopped: " + c.error().message);
    kill(b.pid, SIGCONT);
    b.burst(32);
    got.clear();
    if (auto c = (*tracker)->collect(got); !c)
        return result(name, "FAIL", "collect: " + c.error().message);
    got = normalizeRanges(std::move(got));
    for (uint64_t p = 0; p < 32; ++p)
        if (!covered(got, base + p * kPage))
            return result(name, "FAIL",
                          "page " + std::to_string(p) +
                              " written after SIGCONT "
                              "not reported");
    bool whole = std::any_of(got.begin(), got.end(), [](auto &r) { return r.wholesale; });
    return result(name, "PASS",
                  std::string("tracked while stopped; 32 pages written after "
                              "SIGCONT reported ") +
                      (whole ? "(wholesale)"
                             : "exactly (" + std::to_string(countPages(got, kPage)) + " pages)"));
}

// Two trackers never see each other's writes: each has its own ring (the
// research version's one ring per domain was a side channel).
int cmdIsolation()
{
    const std::string name = "isolation";
    Burster a, b;
    if (!a.start(64) || !b.start(64))
        return result(name, "FAIL", "fork");
    uintptr_t base_a = a.burst(0), base_b = b.burst(0);
    int mem_a = openMem(a.pid), mem_b = openMem(b.pid);
    Track ta = trackPid(a.pid, mem_a, OOH_MODE_EPML), tb = trackPid(b.pid, mem_b, OOH_MODE_EPML);
    if (ta.err || tb.err)
        return result(name, "FAIL", std::string("track: ") + strerror(ta.err ? ta.err : tb.err));
    auto map = [](Track &t) {
        int fd = open(oohUioDevicePath(t.req.uio_index).c_str(), O_RDWR | O_CLOEXEC);
        void *m = mmap(nullptr, t.req.ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        return m == MAP_FAILED ? nullptr : static_cast<ooh_ring_header *>(m);
    };
    ooh_ring_header *ha = map(ta), *hb = map(tb);
    if (!ha || !hb || ta.req.uio_index == tb.req.uio_index)
        return result(name, "FAIL", "two trackers do not have two rings");
    ooh_collect_req c = {};
    c.size = sizeof(c);
    ioctl(ta.ctl, OOH_IOC_COLLECT, &c);
    ha->tail = c.collect_head;
    ioctl(tb.ctl, OOH_IOC_COLLECT, &c);
    hb->tail = c.collect_head;

    a.burst(64); // only A writes; B sleeps in read()
    ooh_collect_req ca = {}, cb = {};
    ca.size = cb.size = sizeof(ca);
    ioctl(ta.ctl, OOH_IOC_COLLECT, &ca);
    ioctl(tb.ctl, OOH_IOC_COLLECT, &cb);
    auto entries = [](ooh_ring_header *h) {
        return reinterpret_cast<uint64_t *>(reinterpret_cast<char *>(h) + h->entries_offset);
    };
    uint64_t in_a = 0, leaked = 0;
    for (uint64_t i = ha->tail; i < ca.collect_head; ++i) {
        uint64_t va = entries(ha)[i & (ha->capacity - 1)];
        in_a += va >= base_a && va < base_a + 64 * kPage;
    }
    for (uint64_t i = hb->tail; i < cb.collect_head; ++i) {
        uint64_t va = entries(hb)[i & (hb->capacity - 1)];
        // Same layout after fork: A's pages are at the same addresses in B.
        leaked += (va >= base_a && va < base_a + 64 * kPage) ||
                  (va >= base_b && va < base_b + 64 * kPage);
    }
    std::string detail = "A's ring: " + std::to_string(in_a) + " of A's 64 pages; B's ring: " +
                         std::to_string(cb.collect_head - hb->tail) + " entries, " +
                         std::to_string(leaked) + " in the written range";
    close(ta.ctl);
    close(tb.ctl);
    close(mem_a);
    close(mem_b);
    if (in_a != 64 || leaked)
        return result(name, "FAIL", detail);
    return result(name, "PASS", detail);
}

// oohd moves ring entries out when the module signals the UIO device, so a
// ring smaller than an epoch's writes does not overflow (oohd runs with
// OOH_RING_ENTRIES=512 for this test).
int cmdRingEvents(const std::string &socket)
{
    const std::string name = "oohd-ring-events";
    const int bursts = 6, per_burst = 200;
    Client client;
    if (client.connect(socket.c_str()) < 0)
        return result(name, "FAIL", "connect to oohd: " + client.error());
    Burster b;
    if (!b.start(4096, true))
        return result(name, "FAIL", "fork");
    uintptr_t base = b.burst(0);
    if (client.track(b.pid, "pml-ring") < 0)
        return result(name, "FAIL", "track: " + client.error());
    // The daemon's ring for this target, to watch it being consumed.
    ooh_ring_header *hdr = nullptr;
    for (int i = 0; i < 64 && !hdr; ++i) {
        std::string dev = oohUioDevicePath(i);
        if (dev.empty())
            continue;
        int fd = open(dev.c_str(), O_RDONLY | O_CLOEXEC);
        void *m = fd < 0 ? MAP_FAILED : mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0);
        if (fd >= 0)
            close(fd);
        if (m == MAP_FAILED)
            continue;
        auto *h = static_cast<ooh_ring_header *>(m);
        if (h->pid == b.pid)
            hdr = h;
        else
            munmap(m, 4096);
    }
    if (!hdr)
        return result(name, "FAIL", "no ooh-ring UIO device for the target");
    if (hdr->capacity != 512)
        return result(name, "FAIL",
                      "oohd's ring has " + std::to_string(hdr->capacity) +
                          " entries, not OOH_RING_ENTRIES=512");
    std::vector<ooh_range> got;
    if (client.collect(b.pid, got) < 0)
        return result(name, "FAIL", "collect: " + client.error());
    for (int k = 0; k < bursts; ++k) {
        b.burst(per_burst);
        // Liveness, not speed: the entries must leave the ring before the
        // next burst, with no collect in between (bounded wait).
        int waited = 0;
        while (__atomic_load_n(&hdr->tail, __ATOMIC_ACQUIRE) <
                   __atomic_load_n(&hdr->head, __ATOMIC_ACQUIRE) ||
               hdr->head < static_cast<uint64_t>((k + 1) * per_burst)) {
            if (++waited > 3000) // 30 s: a bound for a loaded machine
                return result(name, "FAIL",
                              "oohd did not take the ring's entries after burst " +
                                  std::to_string(k + 1) + " (head " + std::to_string(hdr->head) +
                                  ", tail " + std::to_string(hdr->tail) + ")");
            usleep(10000);
        }
    }
    uint64_t lost = hdr->lost_events;
    if (client.collect(b.pid, got) < 0)
        return result(name, "FAIL", "collect: " + client.error());
    std::vector<PageRange> ranges;
    bool whole = false;
    for (const auto &g : got) {
        ranges.push_back({g.start, g.end, (g.flags & OOH_RANGE_WHOLESALE) != 0});
        whole |= (g.flags & OOH_RANGE_WHOLESALE) != 0;
    }
    ranges = normalizeRanges(std::move(ranges));
    for (uint64_t p = 0; p < uint64_t(bursts * per_burst); ++p)
        if (!covered(ranges, base + p * kPage))
            return result(name, "FAIL", "page " + std::to_string(p) + " not reported");
    if (whole || lost)
        return result(name, "FAIL", "the ring overflowed although oohd was told to drain it");
    return result(name, "PASS",
                  std::to_string(bursts * per_burst) +
                      " pages through a 512-entry ring in one epoch, reported "
                      "exactly (" +
                      std::to_string(countPages(ranges, kPage)) + " pages)");
}

// A soft-dirty collect needs every thread stopped, and a vfork() parent
// cannot stop until its child execs or exits. The collect fails within the
// stop deadline (it used to wait for ever, holding up oohd), and once the
// child has exited the next collect reports the page written meanwhile.
int cmdSoftDirtyVfork()
{
    const std::string name = "soft-dirty-vfork";
    SoftDirtyBackend backend;
    if (auto p = backend.probe(); !p.available)
        return result(name, "FAIL", "soft-dirty unavailable: " + p.reason);
    static char page[4096] __attribute__((aligned(4096)));
    int go[2], done[2];
    if (pipe(go) < 0 || pipe(done) < 0)
        return result(name, "FAIL", "pipe");
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        if (read(go[0], &c, 1) != 1)
            _exit(1);
        if (vfork() == 0) {
            struct timespec ts = {6, 0};
            nanosleep(&ts, nullptr);
            _exit(0);
        }
        page[8] = c; // once the vfork() child has exited
        if (write(done[1], &c, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    struct Reap {
        pid_t pid;
        ~Reap()
        {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
        }
    } reap{pid};
    auto target = Target::open(pid);
    if (!target)
        return result(name, "FAIL", target.error().message);
    auto tracker = backend.track(*target);
    if (!tracker)
        return result(name, "FAIL", "track: " + tracker.error().message);
    if (write(go[1], "x", 1) != 1)
        return result(name, "FAIL", "pipe write");
    for (int i = 0; i < 500 && target->threadState(pid) != 'D'; ++i)
        usleep(10000);
    if (target->threadState(pid) != 'D')
        return result(name, "FAIL", "the parent never blocked in vfork()");

    std::vector<PageRange> got;
    auto t0 = std::chrono::steady_clock::now();
    auto c = (*tracker)->collect(got);
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    if (c)
        return result(name, "FAIL", "a collect with a thread blocked in vfork() succeeded");
    if (c.error().code != ETIMEDOUT || c.error().message.find("vfork") == std::string::npos)
        return result(name, "FAIL", "collect: " + c.error().message);
    if (ms > 5000)
        return result(name, "FAIL", "the collect took " + std::to_string(ms) + " ms");
    const std::string refused = c.error().message;

    // It stops once its child has exited, and is held until detached.
    for (int i = 0; i < 2000 && reapStrayTracees() > 0; ++i)
        usleep(10000);
    if (reapStrayTracees() > 0)
        return result(name, "FAIL", "the parent was not detached after its late stop");
    char x;
    if (read(done[0], &x, 1) != 1)
        return result(name, "FAIL", "the target never left vfork()");
    got.clear();
    if (auto again = (*tracker)->collect(got); !again)
        return result(name, "FAIL", "collect after vfork(): " + again.error().message);
    got = normalizeRanges(std::move(got));
    if (!covered(got, reinterpret_cast<uintptr_t>(page)))
        return result(name, "FAIL", "the page written after vfork() was not reported");
    return result(name, "PASS",
                  "refused in " + std::to_string(ms) + " ms (" + refused +
                      "); the next collect reported the page written since");
}

// Dirty pages reported per collect vs written, for bench/vm.
int cmdRatio(const std::string &backend_name, const std::string &mode)
{
    const uint64_t pages = 4096;
    auto backend = makeBackend(backend_name, mode);
    if (!backend || !backend->probe().available)
        return result("ratio-" + backend_name + mode, "SKIP", "backend unavailable");
    Burster b;
    if (!b.start(pages))
        return 1;
    b.burst(0);
    auto proc = Target::open(b.pid);
    if (!proc)
        return 1;
    auto tracker = backend->track(*proc);
    if (!tracker)
        return result("ratio-" + backend_name + mode, "FAIL", tracker.error().message);
    std::vector<PageRange> got;
    (void)(*tracker)->collect(got);
    for (uint8_t n : {1, 8, 64, 254}) {
        b.burst(n);
        got.clear();
        if (!(*tracker)->collect(got))
            return 1;
        got = normalizeRanges(std::move(got));
        std::printf("OOH-BENCH ratio %s %s written=%u reported=%" PRIu64 "\n", backend_name.c_str(),
                    mode.empty() ? "-" : mode.c_str(), n, countPages(got, kPage));
    }
    return 0;
}

// Raw view of one SPML epoch, for diagnosis.
int cmdDebugSpml(const std::string &mode)
{
    Burster b;
    if (!b.start(64))
        return 1;
    uintptr_t base = b.burst(0);
    int mem = openMem(b.pid);
    Track t = trackPid(b.pid, mem, mode == "epml" ? OOH_MODE_EPML : OOH_MODE_SPML);
    if (t.err) {
        std::printf("track: %s\n", strerror(t.err));
        return 1;
    }
    std::string uio = oohUioDevicePath(t.req.uio_index);
    int fd = open(uio.c_str(), O_RDWR);
    auto *hdr = static_cast<ooh_ring_header *>(
        mmap(nullptr, t.req.ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    auto *ent = reinterpret_cast<uint64_t *>(reinterpret_cast<char *>(hdr) + hdr->entries_offset);
    ooh_collect_req c = {};
    c.size = sizeof(c);
    ioctl(t.ctl, OOH_IOC_COLLECT, &c);
    hdr->tail = c.collect_head;
    b.burst(4);
    ioctl(t.ctl, OOH_IOC_COLLECT, &c);
    std::printf("base %#lx head %llu collect_head %llu lost %llu\n", (unsigned long)base,
                (unsigned long long)hdr->head, (unsigned long long)c.collect_head,
                (unsigned long long)c.lost_events);
    for (uint64_t i = hdr->tail; i < c.collect_head; ++i)
        std::printf("  entry %#llx\n", (unsigned long long)ent[i & (hdr->capacity - 1)]);
    int pm = open(("/proc/" + std::to_string(b.pid) + "/pagemap").c_str(), O_RDONLY);
    for (int p = 0; p < 4; ++p) {
        uint64_t e = 0;
        pread(pm, &e, 8, static_cast<off_t>((base / kPage + p) * 8));
        std::printf("  page %d va %#lx pagemap %#llx gpa %#llx\n", p,
                    (unsigned long)(base + p * kPage), (unsigned long long)e,
                    (unsigned long long)((e & ((1ull << 55) - 1)) << 12));
    }
    return 0;
}

// `expect` holds BACKEND=yes or BACKEND=no, optionally followed by
// ":TEXT" that the probe's reason must contain (the path the backend takes).
int cmdBackends(const std::string &name, const std::string &expect_default,
                const std::vector<std::string> &expect)
{
    std::string first, detail, fail;
    for (auto &b : makeBackends()) {
        BackendProbe p = b->probe();
        const std::string bname(b->name());
        std::printf("  %-10s %s: %s\n", bname.c_str(), p.available ? "available" : "unavailable",
                    p.reason.c_str());
        if (p.available && first.empty())
            first = b->name();
        for (const auto &e : expect) {
            if (e.rfind(bname + "=", 0) != 0)
                continue;
            std::string want = e.substr(bname.size() + 1), text;
            if (auto colon = want.find(':'); colon != std::string::npos) {
                text = want.substr(colon + 1);
                want.resize(colon);
            }
            if ((want == "yes") != p.available)
                fail = bname +
                       (p.available ? " is available, expected not: "
                                    : " is unavailable, expected available: ") +
                       p.reason;
            else if (!text.empty() && p.reason.find(text) == std::string::npos)
                fail = bname + "'s probe says '" + p.reason + "', expected '" + text + "'";
        }
        detail += bname + (p.available ? "=yes " : "=no ");
    }
    if (fail.empty() && first != expect_default)
        fail = "default backend is '" + first + "', expected '" + expect_default + "'";
    if (!fail.empty())
        return result(name, "FAIL", fail);
    return result(name, "PASS", detail + "default=" + first);
}

} // namespace

int main(int argc, char **argv)
{
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty()) {
        std::fprintf(stderr, "usage: ooh-guest-check ring | permission |\n"
                             "  backends NAME DEFAULT [BACKEND=yes|no[:REASON]]... |\n"
                             "  ground-truth NAME BACKEND MODE WRITER ROUNDS |\n"
                             "  exact NAME BACKEND MODE small|huge |\n"
                             "  overflow MODE | ratio BACKEND MODE | soft-dirty-vfork\n");
        return 2;
    }
    const std::string &cmd = args[0];
    if (cmd == "ring")
        return cmdRing();
    if (cmd == "permission")
        return cmdPermission();
    if (cmd == "backends" && args.size() >= 3)
        return cmdBackends(args[1], args[2], {args.begin() + 3, args.end()});
    if (cmd == "ground-truth" && args.size() == 6)
        return cmdGroundTruth(args[1], args[2], args[3] == "-" ? "" : args[3], args[4],
                              std::atoi(args[5].c_str()));
    if (cmd == "ground-truth-daemon" && args.size() == 6)
        return cmdGroundTruthDaemon(args[1], args[2], args[3], args[4], std::atoi(args[5].c_str()));
    if (cmd == "exact" && args.size() == 5)
        return cmdExact(args[1], args[2], args[3] == "-" ? "" : args[3], args[4] == "huge");
    if (cmd == "overflow" && args.size() == 2)
        return cmdOverflow(args[1]);
    if (cmd == "ring-events" && args.size() == 2)
        return cmdRingEvents(args[1]);
    if (cmd == "isolation")
        return cmdIsolation();
    if (cmd == "stopped")
        return cmdStopped();
    if (cmd == "soft-dirty-vfork")
        return cmdSoftDirtyVfork();
    if (cmd == "debug" && args.size() == 2)
        return cmdDebugSpml(args[1]);
    if (cmd == "ratio" && args.size() == 3)
        return cmdRatio(args[1], args[2] == "-" ? "" : args[2]);
    std::fprintf(stderr, "ooh-guest-check: bad command\n");
    return 2;
}

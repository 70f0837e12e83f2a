// SPDX-License-Identifier: Apache-2.0
// Implementation of oohd/target/thread_stop.h.
#include "thread_stop.h"

#include "log.h"
#include "proc_task.h"

#include <algorithm>
#include <cstring>
#include <linux/capability.h>
#include <linux/kcmp.h>
#include <set>
#include <signal.h>
#include <sstream>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <utility>

namespace ooh {

namespace {

constexpr const char *kLog = "stop";
// Signals passed on to one thread while waiting for its stop.
constexpr int kMaxSignalStops = 64;
// Rounds of listing threads before a target that keeps creating them is
// given up on.
constexpr int kMaxRounds = 1000;
// Threads stopOneThread() tries when the ones before it exit.
constexpr size_t kMaxThreadsTried = 3;

// Threads oohd is still attached to but that did not stop in time:
// detached (with their signal mask restored) as soon as they stop. Per
// tracer thread, since only that thread may detach them.
struct StrayTracee {
    pid_t tid;
    bool restore_mask;
    uint64_t sigmask;
};
std::vector<StrayTracee> &strays()
{
    thread_local std::vector<StrayTracee> list;
    return list;
}

bool isEventStop(int status) { return (status >> 16) == PTRACE_EVENT_STOP; }

std::string duration(std::chrono::milliseconds t)
{
    return t.count() % 1000 == 0 ? std::to_string(t.count() / 1000) + " s"
                                 : std::to_string(t.count()) + " ms";
}

std::string threadOf(pid_t tid, pid_t pid)
{
    return "thread " + std::to_string(tid) + " of pid " + std::to_string(pid);
}

// Whether `tid` is a thread of oohd itself.
bool isOurThread(long tid)
{
    return ::access(("/proc/self/task/" + std::to_string(tid)).c_str(), F_OK) == 0;
}

// The inode of the initial user namespace (PROC_USER_INIT_INO), fixed by
// the kernel.
constexpr ino_t kInitUserNsIno = 0xEFFFFFFDU;

// Whether the kernel will let us set PTRACE_O_SUSPEND_SECCOMP: it wants
// CAP_SYS_ADMIN in the initial user namespace and the tracer itself outside
// seccomp. Only asked to refuse without touching the target; the kernel's
// answer to PTRACE_SETOPTIONS stays the final word. Empty if so, else why not.
std::string whyNoSeccompSuspension()
{
    struct stat ns {};
    if (::stat("/proc/self/ns/user", &ns) == 0 && ns.st_ino != kInitUserNsIno)
        return "oohd runs in a user namespace other than the initial one";
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (::syscall(SYS_capget, &hdr, data) == 0 &&
        !(data[CAP_TO_INDEX(CAP_SYS_ADMIN)].effective & CAP_TO_MASK(CAP_SYS_ADMIN)))
        return "oohd lacks CAP_SYS_ADMIN";
    if (::prctl(PR_GET_SECCOMP) > 0)
        return "oohd itself runs under seccomp";
    return {};
}

const char *seccompModeName(long mode)
{
    return mode == 1 ? "seccomp strict mode, which kills it on any syscall but read, write, "
                       "exit and sigreturn"
                     : "a seccomp filter, which may kill it or fail the injected syscalls";
}

// The error for a process oohd cannot inject into without risking its life.
Error seccompRefusal(pid_t pid, pid_t tid, long mode, const std::string &why)
{
    return makeError(EPERM, threadOf(tid, pid) + " runs under " + seccompModeName(mode) +
                                "; oohd cannot suspend seccomp while it injects its syscalls "
                                "(PTRACE_O_SUSPEND_SECCOMP: " +
                                why +
                                "), so it leaves the process alone. Run oohd as root (with "
                                "CAP_SYS_ADMIN, outside seccomp and user namespaces) to track it");
}

// Why thread tid of target has not stopped, where that can be told; empty
// otherwise. A vfork() parent waits uninterruptibly for its child, which
// shares its mm, to exec or exit; a thread of a frozen cgroup (the v1
// freezer; v2 lets ptrace stops through) sleeps in the refrigerator.
std::string whyNotStopped(const Target &target, pid_t tid)
{
    const std::string task = "task/" + std::to_string(tid) + "/";
    if (target.threadState(tid) == 'D') {
        if (auto children = target.readFile(task + "children")) {
            std::istringstream in(*children);
            long child = 0;
            while (in >> child)
                if (::syscall(SYS_kcmp, tid, static_cast<pid_t>(child), KCMP_VM, 0, 0) == 0)
                    return "it is in vfork(), waiting for its child " + std::to_string(child) +
                           " to exec or exit; try again later";
        }
    }
    auto wchan = target.readFile(task + "wchan");
    if (wchan && *wchan == "__refrigerator") {
        std::string cgroup;
        if (auto groups = target.readFile("cgroup")) {
            std::istringstream in(*groups);
            std::string line;
            while (std::getline(in, line))
                if (auto at = line.find(":freezer:"); at != std::string::npos)
                    cgroup = " " + line.substr(at + 9);
        }
        return "it is frozen (cgroup freezer" + cgroup + "); thaw it or try again later";
    }
    return {};
}

} // namespace

// ---- Tracee ----

Tracee::Tracee(Tracee &&o) noexcept
    : tid_(o.tid_), pid_(o.pid_), attached_(std::exchange(o.attached_, false)),
      running_(o.running_), seccomp_suspended_(o.seccomp_suspended_), mask_set_(o.mask_set_),
      saved_mask_(o.saved_mask_), signal_stops_(o.signal_stops_)
{
}

Tracee &Tracee::operator=(Tracee &&o) noexcept
{
    if (this != &o) {
        if (attached_)
            (void)release();
        tid_ = o.tid_;
        pid_ = o.pid_;
        attached_ = std::exchange(o.attached_, false);
        running_ = o.running_;
        seccomp_suspended_ = o.seccomp_suspended_;
        mask_set_ = o.mask_set_;
        saved_mask_ = o.saved_mask_;
        signal_stops_ = o.signal_stops_;
    }
    return *this;
}

Tracee::~Tracee()
{
    if (!attached_)
        return;
    if (auto r = release(); !r)
        OOH_LOG(kLog, Error) << "releasing " << threadOf(tid_, pid_) << ": " << r.error().message;
}

Result<std::optional<int>> Tracee::pollStop()
{
    int status = 0;
    pid_t r;
    do
        r = ::waitpid(tid_, &status, __WALL | WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return Error::fromErrno(errno, "waiting for " + threadOf(tid_, pid_) + " to stop");
    if (r == 0)
        return std::optional<int>();
    running_ = false;
    if (WIFEXITED(status) || WIFSIGNALED(status))
        attached_ = false;
    // A seized thread reports a group stop as PTRACE_EVENT_STOP with the
    // stopping signal (an interrupt stop says SIGTRAP).
    if (isEventStop(status) && (WSTOPSIG(status) == SIGSTOP || WSTOPSIG(status) == SIGTSTP ||
                                WSTOPSIG(status) == SIGTTIN || WSTOPSIG(status) == SIGTTOU))
        group_stopped_ = true;
    return std::optional<int>(status);
}

Result<int> Tracee::waitStop(StopClock::time_point deadline, const char *what)
{
    auto pause = std::chrono::microseconds(20);
    for (;;) {
        auto st = pollStop();
        if (!st)
            return st.takeError();
        if (*st) {
            if (!attached_)
                return makeError(ESRCH, threadOf(tid_, pid_) + " exited while waiting for " + what);
            return **st;
        }
        if (StopClock::now() > deadline)
            return makeError(ETIMEDOUT,
                             threadOf(tid_, pid_) + " did not reach " + what + " in time");
        std::this_thread::sleep_for(pause);
        pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(5));
    }
}

Result<void> Tracee::resume(int request, int sig)
{
    if (::ptrace(static_cast<__ptrace_request>(request), tid_, nullptr,
                 reinterpret_cast<void *>(static_cast<long>(sig))) < 0)
        return Error::fromErrno(
            errno, std::string(request == PTRACE_SYSCALL ? "PTRACE_SYSCALL" : "PTRACE_CONT") +
                       " of " + threadOf(tid_, pid_));
    running_ = true;
    return {};
}

Result<void> Tracee::interrupt()
{
    if (::ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr) < 0)
        return Error::fromErrno(errno, "PTRACE_INTERRUPT of " + threadOf(tid_, pid_));
    return {};
}

Result<void> Tracee::blockSignals()
{
    if (::ptrace(PTRACE_GETSIGMASK, tid_, sizeof(uint64_t), &saved_mask_) < 0)
        return Error::fromErrno(errno, "PTRACE_GETSIGMASK of " + threadOf(tid_, pid_));
    uint64_t all = ~0ULL;
    if (::ptrace(PTRACE_SETSIGMASK, tid_, sizeof(uint64_t), &all) < 0)
        return Error::fromErrno(errno, "PTRACE_SETSIGMASK of " + threadOf(tid_, pid_));
    mask_set_ = true;
    return {};
}

void Tracee::resumeSeccomp()
{
    if (!seccomp_suspended_)
        return;
    // Should this fail, the detach lifts the suspension all the same,
    // before the thread runs any code of its own.
    if (::ptrace(PTRACE_SETOPTIONS, tid_, nullptr, PTRACE_O_TRACESYSGOOD) < 0)
        OOH_LOG(kLog, Warning) << "lifting the seccomp suspension of " << threadOf(tid_, pid_)
                               << " (PTRACE_SETOPTIONS): " << std::strerror(errno);
    seccomp_suspended_ = false;
}

Result<void> Tracee::release()
{
    if (!attached_)
        return {};
    if (running_) {
        // Not stopped, so it cannot be detached now: hand it over.
        strays().push_back({tid_, mask_set_, saved_mask_});
        attached_ = false;
        OOH_LOG(kLog, Warning) << threadOf(tid_, pid_)
                               << " did not stop; it is detached once it does";
        return {};
    }
    resumeSeccomp();
    attached_ = false;
    if (mask_set_ && ::ptrace(PTRACE_SETSIGMASK, tid_, sizeof(uint64_t), &saved_mask_) < 0)
        return Error::fromErrno(errno, "restoring the signal mask of " + threadOf(tid_, pid_) +
                                           " (PTRACE_SETSIGMASK)");
    if (::ptrace(PTRACE_DETACH, tid_, nullptr, nullptr) < 0)
        return Error::fromErrno(errno, "PTRACE_DETACH of " + threadOf(tid_, pid_));
    if (group_stopped_) {
        // The kernel puts a thread detached during a group stop back into
        // it, but only once the thread runs to its signal check. Until
        // then it looks running: CRIU, which seizes it right after oohd
        // answers, would dump a stopped process as a running one (zdtm
        // stopped01, stopped12). Wait, briefly, until it is stopped again
        // (not at all if a SIGCONT ended the group stop meanwhile).
        auto until = StopClock::now() + std::chrono::milliseconds(200);
        while (threadState(pid_, tid_) != 'T' && StopClock::now() < until) {
            if (::kill(pid_, 0) < 0)
                break;
            std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
    }
    return {};
}

size_t reapStrayTracees()
{
    auto &list = strays();
    std::erase_if(list, [](const StrayTracee &s) {
        int status = 0;
        pid_t r = ::waitpid(s.tid, &status, __WALL | WNOHANG);
        if (r == 0)
            return false; // still running
        if (r < 0 || WIFEXITED(status) || WIFSIGNALED(status))
            return true;
        if (s.restore_mask)
            ::ptrace(PTRACE_SETSIGMASK, s.tid, sizeof(uint64_t), &s.sigmask);
        // A signal-delivery stop gets its signal back; any other stop none.
        bool event = (status >> 16) != 0 || (WSTOPSIG(status) & 0x80);
        ::ptrace(PTRACE_DETACH, s.tid, nullptr, event ? 0 : WSTOPSIG(status));
        OOH_LOG(kLog, Info) << "detached thread " << s.tid << " after its late stop";
        return true;
    });
    return list.size();
}

size_t strayTraceesToRestore()
{
    return static_cast<size_t>(std::count_if(strays().begin(), strays().end(),
                                             [](const StrayTracee &s) { return s.restore_mask; }));
}

// ---- stopping ----

// One request to stop threads of a target, under one deadline.
class StopRequest {
public:
    StopRequest(const Target &target, const StopOptions &options)
        : target_(target), options_(options), deadline_(StopClock::now() + options.timeout)
    {
    }

    // Under seccomp the syscalls run with seccomp suspended for the thread
    // that executes them. Threads can differ; if any of them needs the
    // suspension and the kernel will not grant it, refuse before the
    // process is touched.
    Result<void> refuseUnsuspendableSeccomp() const
    {
        if (!options_.suspend_seccomp)
            return {};
        std::string why = whyNoSeccompSuspension();
        if (why.empty())
            return {};
        for (pid_t tid : target_.threads())
            if (long mode = target_.threadStatusNumber(tid, "Seccomp:"); mode != 0)
                return seccompRefusal(target_.pid(), tid, mode, why);
        return {};
    }

    // Seizes and interrupts thread tid; nothing if it needs no stop (it is
    // exiting, or held stopped by another tracer where that is accepted).
    Result<std::optional<Tracee>> seize(pid_t tid) const
    {
        if (::ptrace(PTRACE_SEIZE, tid, nullptr, PTRACE_O_TRACESYSGOOD) < 0) {
            int err = errno;
            if (err == ESRCH)
                return std::optional<Tracee>(); // exiting: writes nothing more
            if (err == EPERM) {
                const char state = target_.threadState(tid);
                // An exiting thread refuses to be traced; it writes nothing
                // more.
                if (state == 'Z' || state == 'X' || state == '?')
                    return std::optional<Tracee>();
                long tracer = target_.threadStatusNumber(tid, "TracerPid:");
                if (tracer > 0 && isOurThread(tracer))
                    return makeError(ETIMEDOUT, threadOf(tid, target_.pid()) +
                                                    " has not stopped since an earlier attempt "
                                                    "(it is detached once it does); try again "
                                                    "later");
                if (tracer > 0 && options_.accept_stopped_by_other_tracer &&
                    (state == 't' || state == 'T'))
                    return std::optional<Tracee>(); // held stopped by its tracer (CRIU)
                if (tracer > 0)
                    return makeError(EBUSY, "pid " + std::to_string(target_.pid()) +
                                                " is already traced by pid " +
                                                std::to_string(tracer) +
                                                " (a debugger or another checkpointer); detach "
                                                "it first");
            }
            return Error::fromErrno(err, "PTRACE_SEIZE of " + threadOf(tid, target_.pid()));
        }
        Tracee t(tid, target_.pid());
        if (auto r = t.interrupt(); !r && r.error().code != ESRCH)
            return r.takeError(); // ESRCH: exiting, which the wait sees
        return std::optional<Tracee>(std::move(t));
    }

    // Waits until every running tracee is in its interrupt stop (or a group
    // stop), passing on signals that arrive first; drops those that exit,
    // and those that turn out not to be the target's (a tid reused between
    // listing and seizing).
    Result<void> awaitStops(StoppedThreads &tracees) const
    {
        auto pause = std::chrono::microseconds(20);
        for (;;) {
            bool waiting = false, progress = false;
            for (Tracee &t : tracees) {
                if (!t.attached_ || !t.running_)
                    continue;
                auto st = t.pollStop();
                if (!st)
                    return st.takeError();
                if (!*st) {
                    waiting = true;
                    continue;
                }
                progress = true;
                if (!t.attached_ || isEventStop(**st))
                    continue;
                // A signal-delivery stop: deliver the signal unchanged; the
                // interrupt's stop follows.
                if (++t.signal_stops_ > kMaxSignalStops)
                    return makeError(EAGAIN, threadOf(t.tid(), target_.pid()) +
                                                 " keeps stopping for signals; try again later");
                OOH_TRY(t.resume(PTRACE_CONT, WSTOPSIG(**st)));
                waiting = true;
            }
            if (!waiting)
                break;
            if (StopClock::now() > deadline_) {
                for (Tracee &t : tracees)
                    if (t.attached_ && t.running_)
                        return timedOut(t.tid());
            }
            if (!progress) {
                std::this_thread::sleep_for(pause);
                pause =
                    std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(5));
            }
        }
        // Held now, a thread's tid cannot be reused: it is the target's if
        // the target's directory still lists it.
        for (Tracee &t : tracees)
            if (t.attached_ && !target_.hasThread(t.tid()))
                OOH_TRY(t.release());
        std::erase_if(tracees, [](const Tracee &t) { return !t.attached_; });
        return {};
    }

    Result<void> suspendSeccomp(Tracee &t) const
    {
        // Only now that the thread is stopped, so that its own code never
        // runs unfiltered; asked for the thread as it is now (it may have
        // entered seccomp since refuseUnsuspendableSeccomp()).
        if (!options_.suspend_seccomp)
            return {};
        long mode = target_.threadStatusNumber(t.tid(), "Seccomp:");
        if (mode == 0)
            return {};
        if (::ptrace(PTRACE_SETOPTIONS, t.tid(), nullptr,
                     PTRACE_O_TRACESYSGOOD | PTRACE_O_SUSPEND_SECCOMP) < 0)
            return seccompRefusal(target_.pid(), t.tid(), mode, std::strerror(errno));
        t.seccomp_suspended_ = true;
        OOH_LOG(kLog, Debug) << "seccomp of " << threadOf(t.tid(), target_.pid())
                             << " suspended while oohd works in it";
        return {};
    }

    // ETIMEDOUT, saying `what`, once the deadline has passed.
    Result<void> checkDeadline(const std::string &what) const
    {
        if (StopClock::now() <= deadline_)
            return {};
        return makeError(ETIMEDOUT,
                         what + " (within " + duration(options_.timeout) + "); try again later");
    }

private:
    Error timedOut(pid_t tid) const
    {
        std::string why = whyNotStopped(target_, tid);
        return makeError(ETIMEDOUT,
                         threadOf(tid, target_.pid()) + " did not stop within " +
                             duration(options_.timeout) +
                             (why.empty() ? " (uninterruptible wait, e.g. vfork() waiting for its "
                                            "child, or a frozen cgroup); try again later"
                                          : ": " + why));
    }

    const Target &target_;
    StopOptions options_;
    StopClock::time_point deadline_;
};

Result<StoppedThreads> stopAllThreads(const Target &target, const StopOptions &options)
{
    StopRequest request(target, options);
    OOH_TRY(request.refuseUnsuspendableSeccomp());
    StoppedThreads held;
    std::set<pid_t> seen;
    size_t held_by_others = 0;
    // A thread that runs can create threads: list again once every thread
    // listed has stopped, until a listing finds no new one and accounts for
    // every thread the kernel counts (readdir of task/ can skip an entry
    // while threads exit, so "nothing new" alone proves nothing).
    for (int round = 0; round < kMaxRounds; ++round) {
        bool added = false;
        for (pid_t tid : target.threads()) {
            if (!seen.insert(tid).second)
                continue;
            auto t = request.seize(tid);
            if (!t)
                return t.takeError();
            if (*t) {
                held.push_back(std::move(**t));
                added = true;
            } else if (char state = target.threadState(tid); state == 't' || state == 'T') {
                ++held_by_others;
            }
        }
        OOH_TRY(request.awaitStops(held));
        if (added)
            continue;
        if (seen.empty() || !target.isAlive())
            return makeError(ESRCH, "process " + std::to_string(target.pid()) + " exited");
        // The kernel counts live threads and a main thread that exited
        // before the others (it stays until they end). Threads that exit
        // leave the count a moment later than they leave the listing.
        const char main_state = target.threadState(target.pid());
        const size_t exited_main = main_state == 'Z' || main_state == 'X';
        if (held.size() + held_by_others + exited_main < target.threadCount()) {
            OOH_TRY(request.checkDeadline("pid " + std::to_string(target.pid()) +
                                          " keeps creating threads"));
            continue;
        }
        for (Tracee &t : held)
            OOH_TRY(request.suspendSeccomp(t));
        return Result<StoppedThreads>(std::move(held));
    }
    return makeError(EAGAIN, "pid " + std::to_string(target.pid()) +
                                 " keeps creating threads; try again later");
}

Result<Tracee> stopOneThread(const Target &target, const StopOptions &options)
{
    StopRequest request(target, options);
    OOH_TRY(request.refuseUnsuspendableSeccomp());
    // The main thread first: its stop is the least surprising. Threads in
    // uninterruptible sleep ('D': vfork(), I/O) cannot stop soon: last.
    const pid_t pid = target.pid();
    std::vector<pid_t> tids{pid};
    for (pid_t tid : target.threads())
        if (tid != pid)
            tids.push_back(tid);
    std::stable_partition(tids.begin(), tids.end(),
                          [&](pid_t tid) { return target.threadState(tid) != 'D'; });
    if (tids.size() > kMaxThreadsTried)
        tids.resize(kMaxThreadsTried);

    Error last = makeError(ESRCH, "process " + std::to_string(pid) + " has no threads");
    for (pid_t tid : tids) {
        auto t = request.seize(tid);
        if (!t)
            return t.takeError();
        StoppedThreads one;
        if (*t)
            one.push_back(std::move(**t));
        OOH_TRY(request.awaitStops(one));
        if (one.empty()) {
            last = makeError(ESRCH, threadOf(tid, pid) + " exited while being stopped");
            continue; // try another
        }
        OOH_TRY(request.suspendSeccomp(one.front()));
        return Result<Tracee>(std::move(one.front()));
    }
    return last;
}

} // namespace ooh

// SPDX-License-Identifier: Apache-2.0
// Stopping a target's threads with ptrace: the one place oohd does it, for
// soft-dirty's atomic collect (every thread) and for injection (one).
//
// A thread is seized (PTRACE_SEIZE, invisible to its parent) and
// interrupted (PTRACE_INTERRUPT); signals that reach it first are passed
// on, and its stop is waited for until one deadline, shared by every
// thread of one request and given by the caller (2 s unless said), so that
// the wait can move off the event loop later without changing here. A
// thread that cannot stop in time (vfork() waiting for its child, a frozen
// cgroup) is refused with an error saying which and why. Threads are
// detached on release; one that never stopped cannot be detached yet and
// is detached once it stops (reapStrayTracees).
//
// ptrace ties a tracee to the tracer *thread*: every call on a Tracee, and
// reapStrayTracees() for it, must come from the thread that stopped it
// (in oohd, the worker that runs the request).
#pragma once

#include "result.h"
#include "target.h"

#include <chrono>
#include <cstdint>
#include <optional>
#include <sys/types.h>
#include <vector>

namespace ooh {

using StopClock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kDefaultStopTimeout{2000};

struct StopOptions {
    // How long the threads may take to stop, all together.
    std::chrono::milliseconds timeout = kDefaultStopTimeout;
    // Syscalls will run in the stopped thread: suspend seccomp
    // (PTRACE_O_SUSPEND_SECCOMP) where it applies, so that strict mode or a
    // filter does not kill it for them. Refused with EPERM, before any
    // thread is touched, where oohd may not (no CAP_SYS_ADMIN in the
    // initial user namespace).
    bool suspend_seccomp = false;
    // A thread held stopped by another tracer (CRIU while it dumps) counts
    // as stopped; otherwise an already traced target is refused (EBUSY).
    bool accept_stopped_by_other_tracer = false;
};

// One thread seized by oohd. Moves, never copies; released on destruction.
class Tracee {
public:
    Tracee(Tracee &&other) noexcept;
    Tracee &operator=(Tracee &&other) noexcept; // releases what it held
    Tracee(const Tracee &) = delete;
    ~Tracee();

    pid_t tid() const { return tid_; }
    // In a ptrace stop (not running, not exited).
    bool stopped() const { return attached_ && !running_; }

    // Waits until `deadline` for the thread's next stop and returns its
    // wait status. ETIMEDOUT if it does not stop in time (it stays
    // running: release() hands it over), ESRCH if it exits.
    Result<int> waitStop(StopClock::time_point deadline, const char *what);
    // Resumes a stopped thread with PTRACE_CONT or PTRACE_SYSCALL,
    // delivering `sig` (0 for none).
    Result<void> resume(int request, int sig = 0);
    // Asks for an interrupt stop (PTRACE_INTERRUPT).
    Result<void> interrupt();
    // Blocks every signal of the stopped thread until release, so that
    // nothing is delivered while oohd borrows it.
    Result<void> blockSignals();
    // Ends the seccomp suspension (if any) before the thread leaves its
    // stop, so that none of its own code runs unfiltered.
    void resumeSeccomp();

    // Restores seccomp and the signal mask and detaches. A thread that is
    // running cannot be detached: it is handed to reapStrayTracees().
    Result<void> release();

private:
    friend class StopRequest;
    Tracee(pid_t tid, pid_t pid) : tid_(tid), pid_(pid), attached_(true), running_(true) {}
    // Non-blocking: the thread's status if it has stopped or exited.
    Result<std::optional<int>> pollStop();

    pid_t tid_ = -1;
    pid_t pid_ = -1; // of its process, for messages
    bool attached_ = false;
    bool running_ = false; // seized or resumed, not seen stopped since
    bool seccomp_suspended_ = false;
    bool group_stopped_ = false; // seen in a group stop (SIGSTOP and the like)
    bool mask_set_ = false;
    uint64_t saved_mask_ = 0;
    int signal_stops_ = 0; // signals passed on while waiting for a stop
};

using StoppedThreads = std::vector<Tracee>;

// Stops every thread of `target`: seizes and interrupts each, lists the
// threads again once all have stopped and repeats until no new one
// appears. Threads that exit meanwhile are left out (they write nothing
// more). Fails with ETIMEDOUT naming the thread that did not stop and why,
// EBUSY if the target is traced by someone else (see StopOptions), ESRCH if
// it has exited; whatever was stopped is released again then.
Result<StoppedThreads> stopAllThreads(const Target &target, const StopOptions &options = {});

// Stops one thread of `target` to run syscalls in: the main thread first,
// threads in uninterruptible sleep last, a few tried if they exit.
Result<Tracee> stopOneThread(const Target &target, const StopOptions &options = {});

// Detaches threads that did not stop in time once they have; returns how
// many of the calling thread's are still waited for. Must be called from
// time to time by each thread that stops threads (oohd's workers).
size_t reapStrayTracees();
// How many of the calling thread's strays need more than a detach once
// they stop (their signal mask restored). When a thread ends, the kernel
// detaches its tracees as they are, so it must not end before these have
// been reaped; for the others, ending is the cleanest detach.
size_t strayTraceesToRestore();

} // namespace ooh

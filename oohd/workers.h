// SPDX-License-Identifier: Apache-2.0
// Workers: runs backend work (ptrace stops, syscall injection, page-table
// scans) off the event loop, one thread per piece of work, and hands each
// result back to the loop. A target that does not stop then holds up only
// the request that waits for it.
//
// Each piece of work gets a thread of its own rather than a slot in a
// fixed pool, so no number of stuck targets can starve the others; the
// session table bounds how many run at once (one per session). A thread
// that ptrace-attaches a target is its tracer (ptrace is per thread), so
// it also detaches it: a thread that leaves strays (threads that never
// stopped in time, see inject/remote_syscall.h) stays until those that
// need their signal mask restored have stopped; when it ends, the kernel
// detaches the rest as they are, which for a thread that never stopped
// is exactly right.
#pragma once

#include "result.h"
#include "unique_fd.h"

#include <atomic>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <thread>

namespace ooh {

class Workers {
public:
    Workers();
    ~Workers(); // stop()
    Workers(const Workers &) = delete;
    Workers &operator=(const Workers &) = delete;

    // Readable when finished work waits for runCompletions(); the loop
    // watches it. Invalid if it could not be created (then run() fails).
    int eventFd() const { return event_.get(); }

    // Runs `work` on a new thread; then `then` on the loop thread, from
    // runCompletions(). Whatever both share is written by `work` and read
    // by `then` only after it, and `work` is destroyed on its thread
    // before `then` runs, so the loop is the last owner of what they share.
    Result<void> run(std::function<void()> work, std::function<void()> then);

    // On the loop thread: runs the `then` of each finished piece of work,
    // in the order they finished, and joins the threads that ended.
    void runCompletions();

    // Waits for every thread (work in flight finishes: every backend
    // operation has a deadline) and drops the completions not run yet.
    void stop();

private:
    struct Thread {
        std::thread thread;
        bool finished = false;
    };
    void body(std::list<Thread>::iterator self, std::function<void()> work,
              std::function<void()> then);
    void wake();

    UniqueFD event_;
    std::atomic<bool> stopping_{false};
    std::mutex mutex_; // guards ready_, threads_ and each Thread's `finished`
    std::deque<std::function<void()>> ready_;
    std::list<Thread> threads_;
};

} // namespace ooh

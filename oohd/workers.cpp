// SPDX-License-Identifier: Apache-2.0
// Implementation of oohd/workers.h.
#include "workers.h"

#include "inject/remote_syscall.h"
#include "log.h"

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <sys/eventfd.h>
#include <system_error>
#include <vector>

namespace ooh {

namespace {

constexpr const char *kLog = "workers";
// How often a thread that waits for its strays to stop looks at them.
constexpr auto kStrayPoll = std::chrono::milliseconds(20);

} // namespace

Workers::Workers() : event_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK))
{
    if (!event_.isValid())
        OOH_LOG(kLog, Error) << "eventfd: " << std::strerror(errno)
                             << "; oohd cannot track or collect";
}

Workers::~Workers() { stop(); }

void Workers::wake()
{
    uint64_t one = 1;
    ssize_t n = ::write(event_.get(), &one, sizeof(one));
    (void)n; // the counter cannot overflow in practice; the loop reads it
}

Result<void> Workers::run(std::function<void()> work, std::function<void()> then)
{
    if (!event_.isValid())
        return makeError(EMFILE, "oohd could not create the eventfd its worker threads report "
                                 "through (see its log); restart it");
    std::lock_guard lock(mutex_);
    threads_.emplace_back();
    auto self = std::prev(threads_.end());
    try {
        // Started under the lock: the thread touches its node only under it.
        self->thread = std::thread(&Workers::body, this, self, std::move(work), std::move(then));
    } catch (const std::system_error &e) {
        threads_.erase(self);
        return makeError(e.code().value() ? e.code().value() : EAGAIN,
                         std::string("oohd cannot start a worker thread: ") + e.what() +
                             "; try again later");
    }
    return {};
}

void Workers::body(std::list<Thread>::iterator self, std::function<void()> work,
                   std::function<void()> then)
{
    // Signals are the loop's (signalfd): none is delivered to a worker.
    sigset_t all;
    sigfillset(&all);
    ::pthread_sigmask(SIG_BLOCK, &all, nullptr);

    work();
    work = nullptr; // destroyed here, before the loop runs `then`
    {
        std::lock_guard lock(mutex_);
        ready_.push_back(std::move(then));
    }
    wake();

    size_t waited = 0;
    while (!stopping_ && strayTraceesToRestore() > 0) {
        if (waited++ == 0)
            OOH_LOG(kLog, Info) << "waiting for " << strayTraceesToRestore()
                                << " thread(s) to stop before detaching them";
        reapStrayTracees();
        std::this_thread::sleep_for(kStrayPoll);
    }
    {
        std::lock_guard lock(mutex_);
        self->finished = true;
    }
    wake(); // to be joined
}

void Workers::runCompletions()
{
    uint64_t count;
    ssize_t n = ::read(event_.get(), &count, sizeof(count));
    (void)n; // EAGAIN: nothing new, which is fine
    std::deque<std::function<void()>> ready;
    std::vector<std::thread> ended;
    {
        std::lock_guard lock(mutex_);
        ready.swap(ready_);
        for (auto it = threads_.begin(); it != threads_.end();) {
            if (it->finished) {
                ended.push_back(std::move(it->thread));
                it = threads_.erase(it);
            } else {
                ++it;
            }
        }
    }
    for (auto &t : ended)
        t.join();
    for (auto &then : ready)
        then();
}

void Workers::stop()
{
    stopping_ = true;
    std::list<Thread> threads;
    {
        std::lock_guard lock(mutex_);
        threads.swap(threads_);
    }
    if (!threads.empty())
        OOH_LOG(kLog, Info) << "waiting for " << threads.size() << " worker thread(s)";
    for (auto &t : threads)
        if (t.thread.joinable())
            t.thread.join();
    std::deque<std::function<void()>> dropped;
    {
        std::lock_guard lock(mutex_);
        dropped.swap(ready_);
    }
}

} // namespace ooh

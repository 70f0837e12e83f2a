// SPDX-License-Identifier: Apache-2.0
// FakeBackend: a Backend whose trackers answer from a script (ranges, an
// error, a wait at a latch), so that the daemon's protocol, sessions and
// collect path are tested without root or kernel features. Tests only.
#pragma once

#include "backend.h"
#include "unique_fd.h"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <sys/eventfd.h>
#include <unistd.h>
#include <vector>

namespace ooh::test {

// A gate that fake operations wait at until the test opens it.
class Latch {
public:
    void open()
    {
        std::lock_guard lock(mutex_);
        open_ = true;
        cv_.notify_all();
    }
    // Called by the fake (on a worker thread): blocks until open().
    void wait()
    {
        std::unique_lock lock(mutex_);
        ++arrived_;
        cv_.notify_all();
        cv_.wait(lock, [this] { return open_; });
    }
    // Whether n callers have reached wait() within `timeout`.
    bool reached(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(5))
    {
        std::unique_lock lock(mutex_);
        return cv_.wait_for(lock, timeout, [&] { return arrived_ >= n; });
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    bool open_ = false;
    size_t arrived_ = 0;
};

// What one track or collect of a pid does.
struct FakeStep {
    std::vector<PageRange> ranges; // a collect's answer (any order)
    std::optional<Error> error;    // fail instead
    std::shared_ptr<Latch> gate;   // wait here first
};

// The script and what happened, shared by the test and the fake (which
// runs on oohd's worker threads): every member under `mutex`.
struct FakeScript {
    std::mutex mutex;
    bool available = true; // what the next probe says
    int probes = 0;
    std::map<pid_t, FakeStep> tracks;               // one track each, then removed
    std::map<pid_t, std::deque<FakeStep>> collects; // in order; none left: no ranges
    uint64_t tracked_bytes = 4096;
    bool reports_discards = true; // what the trackers' reportsDiscards() say
    bool with_events = false;     // trackers get an event fd (see fireEvent)
    std::map<pid_t, int> event_fds;
    std::map<pid_t, Error> event_errors;
    int live_trackers = 0;
    int collects_done = 0;

    void addCollect(pid_t pid, FakeStep step)
    {
        std::lock_guard lock(mutex);
        collects[pid].push_back(std::move(step));
    }
    void setTrack(pid_t pid, FakeStep step)
    {
        std::lock_guard lock(mutex);
        tracks[pid] = std::move(step);
    }
    // Makes pid's tracker event fd readable; its handleEvents() then fails
    // with `why` (tracking lost). False if pid has no tracker with events.
    bool fireEvent(pid_t pid, Error why)
    {
        std::lock_guard lock(mutex);
        auto it = event_fds.find(pid);
        if (it == event_fds.end())
            return false;
        event_errors[pid] = std::move(why);
        uint64_t one = 1;
        return ::write(it->second, &one, sizeof(one)) == sizeof(one);
    }
    int liveTrackers()
    {
        std::lock_guard lock(mutex);
        return live_trackers;
    }
};

class FakeTracker final : public Tracker {
public:
    FakeTracker(std::shared_ptr<FakeScript> script, pid_t pid)
        : script_(std::move(script)), pid_(pid)
    {
        std::lock_guard lock(script_->mutex);
        script_->live_trackers++;
        if (script_->with_events) {
            events_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
            script_->event_fds[pid_] = events_.get();
        }
    }
    ~FakeTracker() override
    {
        std::lock_guard lock(script_->mutex);
        script_->live_trackers--;
        if (events_.isValid())
            script_->event_fds.erase(pid_);
    }

    Result<void> collect(std::vector<PageRange> &out) override
    {
        FakeStep step;
        {
            std::lock_guard lock(script_->mutex);
            auto &queue = script_->collects[pid_];
            if (!queue.empty()) {
                step = std::move(queue.front());
                queue.pop_front();
            }
        }
        if (step.gate)
            step.gate->wait();
        std::lock_guard lock(script_->mutex);
        script_->collects_done++;
        if (step.error)
            return *step.error;
        out.insert(out.end(), step.ranges.begin(), step.ranges.end());
        return {};
    }
    int eventFd() const override { return events_.get(); }
    Result<void> handleEvents() override
    {
        uint64_t count;
        while (::read(events_.get(), &count, sizeof(count)) == sizeof(count)) {
        }
        std::lock_guard lock(script_->mutex);
        auto it = script_->event_errors.find(pid_);
        if (it == script_->event_errors.end())
            return {};
        Error why = it->second;
        script_->event_errors.erase(it);
        return why;
    }
    bool reportsDiscards() const override
    {
        std::lock_guard lock(script_->mutex);
        return script_->reports_discards;
    }
    uint64_t trackedBytes() const override
    {
        std::lock_guard lock(script_->mutex);
        return script_->tracked_bytes;
    }

private:
    std::shared_ptr<FakeScript> script_;
    pid_t pid_;
    UniqueFD events_;
};

class FakeBackend final : public Backend {
public:
    explicit FakeBackend(std::shared_ptr<FakeScript> script, std::string name = "fake")
        : script_(std::move(script)), name_(std::move(name))
    {
    }

    std::string_view name() const override { return name_; }
    BackendProbe probe() override
    {
        std::lock_guard lock(script_->mutex);
        script_->probes++;
        if (script_->available)
            return {true, "scripted"};
        return {false, "scripted as unavailable"};
    }
    Result<std::unique_ptr<Tracker>> track(const Target &target) override
    {
        FakeStep step;
        {
            std::lock_guard lock(script_->mutex);
            auto it = script_->tracks.find(target.pid());
            if (it != script_->tracks.end()) {
                step = std::move(it->second);
                script_->tracks.erase(it);
            }
        }
        if (step.gate)
            step.gate->wait();
        if (step.error)
            return *step.error;
        return std::unique_ptr<Tracker>(std::make_unique<FakeTracker>(script_, target.pid()));
    }

private:
    std::shared_ptr<FakeScript> script_;
    std::string name_;
};

// The fake as oohd's only backend.
inline std::vector<std::unique_ptr<Backend>> fakeBackends(std::shared_ptr<FakeScript> script)
{
    std::vector<std::unique_ptr<Backend>> list;
    list.push_back(std::make_unique<FakeBackend>(std::move(script)));
    return list;
}

} // namespace ooh::test

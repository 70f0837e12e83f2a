// SPDX-License-Identifier: Apache-2.0
// Implementation of oohd/session_table.h.
#include "session_table.h"

#include "log.h"

#include <algorithm>
#include <ctime>
#include <optional>
#include <sys/random.h>
#include <unistd.h>

namespace ooh {

namespace {

constexpr const char *kLog = "sessions";

uint64_t monotonicNs()
{
    struct timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

} // namespace

SessionTable::SessionTable(std::vector<std::unique_ptr<Backend>> backends, SessionLimits limits,
                           FdWatcher &watcher)
    : limits_(limits), watcher_(watcher)
{
    for (auto &b : backends)
        backends_.push_back({std::move(b), {}});
    if (workers_.eventFd() >= 0) {
        if (auto w = watcher_.watch(workers_.eventFd(), [this] { workers_.runCompletions(); }); !w)
            workers_error_ = makeError(w.error().code, "oohd cannot watch its worker threads (" +
                                                           w.error().message + "); restart it");
    }
    if (workers_error_.code)
        OOH_LOG(kLog, Error) << workers_error_.message;
}

SessionTable::~SessionTable()
{
    // Work in flight owns trackers and processes and calls back into the
    // table: it ends first.
    workers_.stop();
    if (workers_.eventFd() >= 0)
        watcher_.unwatch(workers_.eventFd());
    waiting_.clear();
    std::vector<pid_t> pids;
    for (const auto &[pid, s] : sessions_)
        pids.push_back(pid);
    for (pid_t pid : pids)
        endSession(pid);
}

void SessionTable::probeBackends()
{
    bool have_default = false;
    for (auto &e : backends_) {
        e.probe = e.backend->probe();
        OOH_LOG(kLog, Notice) << "backend " << e.backend->name() << ": "
                              << (e.probe.available ? "available" : "unavailable") << " ("
                              << e.probe.reason << ")"
                              << (e.probe.available && !have_default ? " [default]" : "");
        have_default |= e.probe.available;
    }
    if (!have_default)
        OOH_LOG(kLog, Warning) << "no backend is available: every track request will fail";
}

bool SessionTable::isAvailable(BackendEntry &e)
{
    if (e.probe.available)
        return true;
    // What was missing may have come since (the guest module, loaded
    // after oohd started). Probes are cheap and touch no target. An
    // available backend is never probed again, so no probe runs while
    // that backend tracks.
    e.probe = e.backend->probe();
    if (e.probe.available)
        OOH_LOG(kLog, Notice) << "backend " << e.backend->name() << " is available now ("
                              << e.probe.reason << ")";
    return e.probe.available;
}

std::vector<BackendStatus> SessionTable::backends()
{
    std::vector<BackendStatus> list;
    bool have_default = false;
    for (auto &e : backends_) {
        const bool available = isAvailable(e);
        list.push_back({std::string(e.backend->name()), e.probe, available && !have_default});
        have_default |= available;
    }
    return list;
}

SessionTable::BackendEntry *SessionTable::chooseBackend(const std::string &name, Error *why)
{
    for (auto &e : backends_) {
        if (!name.empty() && e.backend->name() != name)
            continue;
        if (isAvailable(e))
            return &e;
        if (!name.empty()) {
            *why = makeError(ENOTSUP, "backend " + name + " is not available: " + e.probe.reason);
            return nullptr;
        }
    }
    if (!name.empty()) {
        std::string known;
        for (auto &e : backends_)
            known += (known.empty() ? "" : ", ") + std::string(e.backend->name());
        *why = makeError(EINVAL, "unknown backend '" + name + "' (known: " + known + ")");
    } else {
        *why = makeError(ENOTSUP, "no tracking backend is available on this machine (see "
                                  "`oohctl backends`)");
    }
    return nullptr;
}

uint64_t SessionTable::newSessionId() const
{
    // Random rather than counted: a restarted oohd must not hand out an id
    // that a client recorded from the previous one (the CRIU plugin keeps
    // it in the images to prove a chain unbroken).
    for (;;) {
        uint64_t id = 0;
        if (::getrandom(&id, sizeof(id), GRND_NONBLOCK) != sizeof(id))
            id = monotonicNs() ^ (static_cast<uint64_t>(::getpid()) << 40);
        bool taken = id == 0 || std::any_of(sessions_.begin(), sessions_.end(),
                                            [id](const auto &p) { return p.second.id == id; });
        if (!taken)
            return id;
    }
}

TrackResult SessionTable::trackResult(const Session &s, bool already_tracked) const
{
    TrackResult t;
    t.pid = s.process.pid();
    t.session_id = s.id;
    t.backend = s.backend;
    t.start_time = s.process.startTime();
    t.epoch = s.epoch;
    t.already_tracked = already_tracked;
    return t;
}

// Sessions of exited processes are kept only to tell their owner, so they
// make room first. One user tracking its own processes must not take every
// slot: each uid but root has a share, and the last slots are kept for root.
Result<void> SessionTable::checkQuota(uid_t uid)
{
    auto count = [&] {
        size_t all = 0, mine = 0;
        for (const auto &[p, s] : sessions_) {
            all++;
            mine += s.owner_uid == uid;
        }
        return std::pair{all, mine};
    };
    auto [all, mine] = count();
    const size_t shared =
        limits_.max_sessions - std::min(limits_.root_reserve, limits_.max_sessions);
    if (all >= (uid == 0 ? limits_.max_sessions : shared) ||
        (uid != 0 && mine >= limits_.max_per_uid)) {
        std::vector<pid_t> ended;
        for (const auto &[p, s] : sessions_)
            if (s.state != Session::State::Active && s.state != Session::State::Starting && !s.busy)
                ended.push_back(p);
        for (pid_t p : ended)
            endSession(p);
        std::tie(all, mine) = count();
    }
    if (uid != 0 && mine >= limits_.max_per_uid) {
        OOH_LOG(kLog, Warning) << "uid " << uid << " tracks " << mine
                               << " processes, its limit: refused one more";
        return makeError(EUSERS, "uid " + std::to_string(uid) + " already tracks " +
                                     std::to_string(mine) +
                                     " processes, the most oohd allows "
                                     "one user but root (--max-sessions-per-uid); untrack some");
    }
    if (all >= (uid == 0 ? limits_.max_sessions : shared))
        return makeError(ENOSPC, "oohd tracks " + std::to_string(all) + " processes" +
                                     (uid == 0 ? ", its limit"
                                               : "; the remaining " +
                                                     std::to_string(limits_.max_sessions - shared) +
                                                     " are kept for root"));
    return {};
}

bool SessionTable::isBusy(pid_t pid) const
{
    auto it = sessions_.find(pid);
    return it != sessions_.end() && it->second.busy;
}

void SessionTable::whenIdle(pid_t pid, std::function<void()> op)
{
    if (isBusy(pid)) {
        waiting_[pid].push_back(std::move(op));
        return;
    }
    op();
}

void SessionTable::runWaiting(pid_t pid)
{
    for (;;) {
        auto w = waiting_.find(pid);
        if (w == waiting_.end())
            return;
        if (w->second.empty()) {
            waiting_.erase(w);
            return;
        }
        if (isBusy(pid))
            return;
        auto op = std::move(w->second.front());
        w->second.pop_front();
        op(); // may start work on pid again, or end its session
    }
}

void SessionTable::track(const PeerCredentials &client, Target target, const std::string &backend,
                         Done<TrackResult> done)
{
    const pid_t pid = target.pid();
    // std::function wants copies: the process travels by shared pointer.
    auto held = std::make_shared<Target>(std::move(target));
    whenIdle(pid, [this, client, held, backend, done = std::move(done)]() mutable {
        startTrack(client, std::move(held), backend, std::move(done));
    });
}

void SessionTable::startTrack(const PeerCredentials &client, std::shared_ptr<Target> target,
                              const std::string &backend, Done<TrackResult> done)
{
    const pid_t pid = target->pid();
    auto existing = sessions_.find(pid);
    if (existing != sessions_.end()) {
        Session &s = existing->second;
        bool same = s.state == Session::State::Active && s.process.isAlive() &&
                    target->startTime() == s.process.startTime();
        if (same) {
            if (!backend.empty() && backend != s.backend)
                return done(makeError(EEXIST, "pid " + std::to_string(pid) +
                                                  " is already tracked with backend " + s.backend +
                                                  "; untrack it first"));
            return done(trackResult(s, true));
        }
        endSession(pid); // exited, lost or a reused pid: start afresh
    }
    if (auto room = checkQuota(client.uid); !room)
        return done(room.takeError());
    Error why;
    BackendEntry *entry = chooseBackend(backend, &why);
    if (!entry)
        return done(why);
    if (workers_error_.code)
        return done(workers_error_);

    // The session exists from now on (it counts against the quota and
    // makes later requests for pid wait), without process or tracker.
    Session placeholder;
    placeholder.id = newSessionId();
    placeholder.backend = std::string(entry->backend->name());
    placeholder.owner_uid = client.uid;
    placeholder.busy = true;
    const uint64_t id = placeholder.id;
    sessions_.emplace(pid, std::move(placeholder));

    struct Job {
        std::shared_ptr<Target> target;
        std::optional<Result<std::unique_ptr<Tracker>>> tracker;
    };
    auto job = std::make_shared<Job>();
    job->target = std::move(target);
    Backend *b = entry->backend.get();
    auto finish = [this, pid, id, job, client, done] {
        auto it = sessions_.find(pid);
        if (it == sessions_.end() || it->second.id != id)
            return; // cannot happen: a busy session is never erased
        Session &s = it->second;
        s.busy = false;
        auto &tracker = *job->tracker;
        if (!tracker) {
            OOH_LOG(kLog, Notice) << "track pid " << pid << " failed: " << tracker.error().message;
            sessions_.erase(it);
            done(tracker.takeError());
            return runWaiting(pid);
        }
        s.process = std::move(*job->target);
        s.tracker = std::move(*tracker);
        s.state = Session::State::Active;
        s.stats.tracked_since_ns = monotonicNs();
        auto w = watcher_.watch(s.process.pidfd(), [this, pid] { markExited(pid); });
        if (w)
            w = watchEvents(s);
        if (!w) {
            endSession(pid);
            done(w.takeError());
            return runWaiting(pid);
        }
        OOH_LOG(kLog, Notice) << "tracking pid " << pid << " with " << s.backend << " for uid "
                              << client.uid;
        done(trackResult(s, false));
        runWaiting(pid);
    };
    auto started = workers_.run([job, b] { job->tracker = b->track(*job->target); }, finish);
    if (!started) {
        sessions_.erase(pid);
        done(started.takeError());
        runWaiting(pid);
    }
}

Result<void> SessionTable::watchEvents(Session &s)
{
    if (!s.tracker || s.tracker->eventFd() < 0)
        return {};
    const pid_t pid = s.process.pid();
    OOH_TRY(watcher_.watch(s.tracker->eventFd(), [this, pid] { onTrackerEvents(pid); }));
    s.event_fd = s.tracker->eventFd();
    return {};
}

void SessionTable::unwatchEvents(Session &s)
{
    if (s.event_fd >= 0)
        watcher_.unwatch(s.event_fd);
    s.event_fd = -1;
}

void SessionTable::onTrackerEvents(pid_t pid)
{
    auto it = sessions_.find(pid);
    if (it == sessions_.end() || !it->second.tracker || it->second.busy)
        return;
    auto r = it->second.tracker->handleEvents();
    if (!r)
        markLost(it->second, r.error().message);
}

Result<Session *> SessionTable::sessionFor(const PeerCredentials &client, pid_t pid)
{
    auto it = sessions_.find(pid);
    if (it == sessions_.end())
        return makeError(ENOENT, "pid " + std::to_string(pid) +
                                     " is not tracked (never tracked, untracked, or oohd "
                                     "restarted and tracking was lost); track it again");
    Session &s = it->second;
    if (client.uid != 0 && client.uid != s.owner_uid)
        return makeError(EPERM, "pid " + std::to_string(pid) + " is tracked by uid " +
                                    std::to_string(s.owner_uid) +
                                    "; only that uid and root may "
                                    "use the session (uid " +
                                    std::to_string(client.uid) + " may not)");
    return &s;
}

void SessionTable::endSession(pid_t pid)
{
    auto it = sessions_.find(pid);
    if (it == sessions_.end())
        return;
    Session &s = it->second;
    unwatchEvents(s);
    if (s.process.pidfd() >= 0)
        watcher_.unwatch(s.process.pidfd());
    sessions_.erase(it);
}

void SessionTable::markExited(pid_t pid)
{
    auto it = sessions_.find(pid);
    if (it == sessions_.end())
        return;
    Session &s = it->second;
    OOH_LOG(kLog, Info) << "tracked pid " << pid << " exited";
    unwatchEvents(s);
    watcher_.unwatch(s.process.pidfd());
    s.tracker.reset(); // releases the userfaultfd and /proc handles now
    s.state = Session::State::Exited;
}

void SessionTable::markLost(Session &s, const std::string &reason)
{
    OOH_LOG(kLog, Warning) << "pid " << s.process.pid() << ": tracking lost: " << reason;
    unwatchEvents(s);
    s.tracker.reset();
    s.state = Session::State::Lost;
    s.lost_reason = reason;
}

void SessionTable::untrack(const PeerCredentials &client, pid_t pid, Done<void> done)
{
    whenIdle(pid, [this, client, pid, done = std::move(done)] {
        auto s = sessionFor(client, pid);
        if (!s)
            return done(s.takeError());
        endSession(pid);
        OOH_LOG(kLog, Notice) << "untracked pid " << pid;
        done({});
    });
}

void SessionTable::collect(const PeerCredentials &client, pid_t pid, uint64_t start_time,
                           uint64_t session_id, Done<CollectResult> done)
{
    whenIdle(pid, [this, client, pid, start_time, session_id, done = std::move(done)]() mutable {
        startCollect(client, pid, start_time, session_id, std::move(done));
    });
}

void SessionTable::startCollect(const PeerCredentials &client, pid_t pid, uint64_t start_time,
                                uint64_t session_id, Done<CollectResult> done)
{
    auto found = sessionFor(client, pid);
    if (!found)
        return done(found.takeError());
    Session &s = **found;
    if (start_time != 0 && start_time != s.process.startTime())
        return done(makeError(ESRCH, "pid " + std::to_string(pid) +
                                         " is now another process (start time differs)"));
    // Before anything else happens to the session: its set belongs to a
    // session this client does not know, so it must not be taken.
    if (session_id != 0 && session_id != s.id)
        return done(makeError(ESTALE, "pid " + std::to_string(pid) +
                                          " is tracked by another session than the one asked "
                                          "for (it was untracked or lost and tracked again "
                                          "since): the writes in between are unknown; track "
                                          "it again and start over"));
    if (s.state == Session::State::Active && !s.process.isAlive())
        markExited(pid);
    if (s.state == Session::State::Exited) {
        endSession(pid);
        return done(makeError(ESRCH, "tracked pid " + std::to_string(pid) + " exited"));
    }
    if (s.state == Session::State::Lost)
        return done(makeError(EIO, "tracking of pid " + std::to_string(pid) + " was lost (" +
                                       s.lost_reason + "); untrack and track it again"));
    if (workers_error_.code)
        return done(workers_error_);

    struct Job {
        std::unique_ptr<Tracker> tracker;
        Result<void> result;
        std::vector<PageRange> ranges; // normalised
        uint64_t ns = 0;
    };
    auto job = std::make_shared<Job>();
    job->tracker = std::move(s.tracker);
    unwatchEvents(s);
    s.busy = true;
    const uint64_t id = s.id;
    auto finish = [this, pid, id, job, done] {
        auto it = sessions_.find(pid);
        if (it == sessions_.end() || it->second.id != id)
            return; // cannot happen: a busy session is never erased
        Session &s = it->second;
        s.busy = false;
        const bool all_changes = job->tracker && job->tracker->reportsDiscards();
        // Exited meanwhile: the tracker is not given back (it dies here).
        if (s.state == Session::State::Active)
            s.tracker = std::move(job->tracker);
        job->tracker.reset();
        if (!job->result) {
            const std::string why = job->result.error().message;
            if (!s.process.isAlive()) {
                endSession(pid);
                done(makeError(ESRCH, "tracked pid " + std::to_string(pid) + " exited"));
            } else {
                markLost(s, why);
                done(
                    makeError(EIO, "tracking of pid " + std::to_string(pid) + " was lost: " + why));
            }
            return runWaiting(pid);
        }
        if (auto w = watchEvents(s); !w)
            markLost(s, "cannot watch its events: " + w.error().message);
        CollectResult out;
        out.pid = pid;
        out.all_changes = all_changes;
        out.ranges = std::move(job->ranges);
        out.page_size = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
        out.pages = countPages(out.ranges, out.page_size);
        uint64_t wholesale = 0;
        for (const auto &x : out.ranges)
            if (x.wholesale)
                wholesale += x.bytes() / out.page_size;
        out.epoch = s.epoch++;
        s.stats.collects++;
        s.stats.pages_reported += out.pages;
        s.stats.pages_wholesale += wholesale;
        s.stats.last_collect_pages = out.pages;
        s.stats.last_collect_ns = job->ns;
        OOH_LOG(kLog, Debug) << "collect pid " << pid << " epoch " << out.epoch << ": " << out.pages
                             << " pages in " << out.ranges.size() << " ranges, "
                             << s.stats.last_collect_ns / 1000 << " us";
        done(std::move(out));
        runWaiting(pid);
    };
    auto work = [job] {
        uint64_t t0 = monotonicNs();
        std::vector<PageRange> raw;
        job->result = job->tracker->collect(raw);
        if (job->result)
            job->ranges = normalizeRanges(std::move(raw));
        job->ns = monotonicNs() - t0;
    };
    auto started = workers_.run(work, finish);
    if (!started) {
        s.busy = false;
        s.tracker = std::move(job->tracker);
        if (auto w = watchEvents(s); !w)
            markLost(s, "cannot watch its events: " + w.error().message);
        done(started.takeError());
        runWaiting(pid);
    }
}

void SessionTable::stats(const PeerCredentials &client, pid_t pid, Done<StatsResult> done)
{
    whenIdle(pid, [this, client, pid, done = std::move(done)] {
        auto found = sessionFor(client, pid);
        if (!found)
            return done(found.takeError());
        const Session &s = **found;
        StatsResult st;
        st.pid = pid;
        st.session_id = s.id;
        st.backend = s.backend;
        st.epoch = s.epoch;
        st.stats = s.stats;
        st.tracked_bytes = s.tracker ? s.tracker->trackedBytes() : 0;
        st.alive = s.state == Session::State::Active && s.process.isAlive();
        done(std::move(st));
    });
}

} // namespace ooh

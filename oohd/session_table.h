// SPDX-License-Identifier: Apache-2.0
// SessionTable: oohd's tracking sessions, the backends with the one cache of
// their probes (see Backend::probe), and each uid's share of sessions. It knows no sockets and no
// protobuf: the server decodes a request, asks here, and encodes the answer.
//
// Threading. All of it runs on the event loop's thread except the backend
// work that may wait for a target or scan its page tables: Backend::track()
// and Tracker::collect() run on Workers threads. What keeps that safe:
//  1. One piece of work per pid at a time. While a session is busy (its
//     track or a collect runs on a worker), every other request for that
//     pid (track, collect, untrack, stats) waits, in arrival order, and
//     runs once the work is done as if it had just arrived.
//  2. Ownership moves; nothing is shared. The work owns the Target (track)
//     or the Tracker (collect) it was given until its completion, on the
//     loop, gives it back to the session. A busy session has no tracker,
//     is never erased, and its tracker's event fd is not watched, so
//     Tracker::handleEvents() (on the loop, non-blocking) never runs during
//     a collect; collect drains those events itself.
//  3. The loop may still mark a busy session Exited (its pidfd became
//     readable); the completion then drops the tracker instead of giving
//     it back.
//  4. probe() runs on the loop and only for a backend whose last probe
//     said unavailable; track() only for an available one. So a probe
//     never runs during a track of the same backend, while several tracks
//     of one backend (different pids) may run at once: track() must not
//     change its backend.
//  5. Shutdown (the destructor) waits for the work in flight, then drops
//     the answers not given.
// A Done callback is called on the loop thread, exactly once: before the
// request's method returns when no backend work is needed, else later.
#pragma once

#include "backend.h"
#include "page_range.h"
#include "peer_credentials.h"
#include "result.h"
#include "session.h"
#include "target.h"
#include "workers.h"

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <sys/types.h>
#include <vector>

namespace ooh {

// How many processes oohd tracks. Anyone may connect, so one local user
// must not take every slot, and the last ones are root's.
struct SessionLimits {
    size_t max_sessions = 4096; // tracked processes in all
    size_t root_reserve = 256;  // of max_sessions, only for uid 0
    size_t max_per_uid = 256;   // tracked by each uid but 0
};

// The event loop, as the table sees it: it watches a tracked process's
// pidfd (exit) and a tracker's event fd, and calls `ready` when readable.
class FdWatcher {
public:
    virtual ~FdWatcher() = default;
    virtual Result<void> watch(int fd, std::function<void()> ready) = 0;
    virtual void unwatch(int fd) = 0;
};

struct BackendStatus {
    std::string name;
    BackendProbe probe;
    bool is_default = false;
};

struct TrackResult {
    pid_t pid = 0; // in oohd's PID namespace
    uint64_t session_id = 0;
    std::string backend;
    uint64_t start_time = 0;
    uint64_t epoch = 0;
    bool already_tracked = false;
};

// One collect's set, normalised (ascending, non-overlapping, merged).
struct CollectResult {
    pid_t pid = 0;
    uint64_t epoch = 0; // the epoch this set closes
    uint64_t page_size = 0;
    uint64_t pages = 0;
    bool all_changes = false; // Tracker::reportsDiscards()
    std::vector<PageRange> ranges;
};

struct StatsResult {
    pid_t pid = 0;
    uint64_t session_id = 0;
    std::string backend;
    uint64_t epoch = 0;
    SessionStats stats;
    uint64_t tracked_bytes = 0;
    bool alive = false;
};

// Each request is answered through a callback, on the event loop's thread.
template <typename T> using Done = std::function<void(Result<T>)>;

class SessionTable {
public:
    SessionTable(std::vector<std::unique_ptr<Backend>> backends, SessionLimits limits,
                 FdWatcher &watcher);
    ~SessionTable();
    SessionTable(const SessionTable &) = delete;
    SessionTable &operator=(const SessionTable &) = delete;

    // Runs every backend's feature probe and logs the outcome.
    void probeBackends();
    // Every backend, what its probe found, and which one is the default.
    // A backend that was unavailable is probed again first.
    std::vector<BackendStatus> backends();

    // Starts tracking `target` for `client` (who may track it was decided
    // already: see Target::checkAccessProof). An empty `backend` picks the default.
    void track(const PeerCredentials &client, Target target, const std::string &backend,
               Done<TrackResult> done);
    // Get-and-reset of pid's set. start_time: 0, or the identity the
    // client was given, to refuse a reused pid; session_id: 0, or the
    // session the client knows, to refuse (ESTALE) another one.
    void collect(const PeerCredentials &client, pid_t pid, uint64_t start_time, uint64_t session_id,
                 Done<CollectResult> done);
    void untrack(const PeerCredentials &client, pid_t pid, Done<void> done);
    void stats(const PeerCredentials &client, pid_t pid, Done<StatsResult> done);

    size_t size() const { return sessions_.size(); }

private:
    struct BackendEntry {
        std::unique_ptr<Backend> backend;
        BackendProbe probe;
    };

    // Runs `op` now if pid has no work in flight, else once it is done.
    void whenIdle(pid_t pid, std::function<void()> op);
    // After pid's work is done: runs what waited, until one starts work.
    void runWaiting(pid_t pid);
    bool isBusy(pid_t pid) const;

    void startTrack(const PeerCredentials &client, std::shared_ptr<Target> target,
                    const std::string &backend, Done<TrackResult> done);
    void startCollect(const PeerCredentials &client, pid_t pid, uint64_t start_time,
                      uint64_t session_id, Done<CollectResult> done);

    // The session of pid, if the client may use it: a session serves the
    // uid that tracked it, and root. Tracking needed the kernel's consent
    // (Target::checkAccessProof); what the session reads later is what that client
    // was allowed to read then.
    Result<Session *> sessionFor(const PeerCredentials &client, pid_t pid);
    // Whether uid may start one more session (sessions that ended make room).
    Result<void> checkQuota(uid_t uid);
    // Whether e is available, probing it again if its last probe said not.
    bool isAvailable(BackendEntry &e);
    // The backend called `name`, or the first available one if empty.
    BackendEntry *chooseBackend(const std::string &name, Error *why);
    uint64_t newSessionId() const;
    TrackResult trackResult(const Session &s, bool already_tracked) const;
    void endSession(pid_t pid);
    void markExited(pid_t pid);
    void markLost(Session &s, const std::string &reason);
    void onTrackerEvents(pid_t pid);
    // Watches s.tracker's event fd, or stops watching it.
    Result<void> watchEvents(Session &s);
    void unwatchEvents(Session &s);

    SessionLimits limits_;
    FdWatcher &watcher_;
    std::vector<BackendEntry> backends_;
    std::map<pid_t, Session> sessions_;
    // Requests waiting for their pid's work, in arrival order.
    std::map<pid_t, std::deque<std::function<void()>>> waiting_;
    Error workers_error_; // why work cannot start (the loop cannot watch workers_)
    // Last: stopped (in the destructor) before anything its work uses.
    Workers workers_;
};

} // namespace ooh

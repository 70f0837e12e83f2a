// SPDX-License-Identifier: Apache-2.0
// SessionTable: oohd's tracking sessions, the backends with the one cache of
// their probes (see Backend::probe), and each uid's share of sessions. It knows no sockets and no
// protobuf: the server decodes a request, asks here, and encodes the answer.
#pragma once

#include "backend.h"
#include "peer_access.h"
#include "page_range.h"
#include "process.h"
#include "result.h"
#include "session.h"

#include <cstdint>
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
    size_t max_sessions = 4096;     // tracked processes in all
    size_t root_reserve = 256;      // of max_sessions, only for uid 0
    size_t max_per_uid = 256;       // tracked by each uid but 0
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
    pid_t pid = 0;  // in oohd's PID namespace
    uint64_t session_id = 0;
    std::string backend;
    uint64_t start_time = 0;
    uint64_t epoch = 0;
    bool already_tracked = false;
};

// One collect's set, normalised (ascending, non-overlapping, merged).
struct CollectResult {
    pid_t pid = 0;
    uint64_t epoch = 0;  // the epoch this set closes
    uint64_t page_size = 0;
    uint64_t pages = 0;
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
    // already: see access_proof.h). An empty `backend` picks the default.
    void track(const PeerCredentials &client, Process target, const std::string &backend,
               Done<TrackResult> done);
    // Get-and-reset of pid's set. start_time: 0, or the identity the
    // client was given, to refuse a reused pid.
    void collect(const PeerCredentials &client, pid_t pid, uint64_t start_time,
                 Done<CollectResult> done);
    void untrack(const PeerCredentials &client, pid_t pid, Done<void> done);
    void stats(const PeerCredentials &client, pid_t pid, Done<StatsResult> done);

    size_t size() const { return sessions_.size(); }

private:
    struct BackendEntry {
        std::unique_ptr<Backend> backend;
        BackendProbe probe;
    };

    // The session of pid, if the client may use it.
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

    SessionLimits limits_;
    FdWatcher &watcher_;
    std::vector<BackendEntry> backends_;
    std::map<pid_t, Session> sessions_;
};

} // namespace ooh

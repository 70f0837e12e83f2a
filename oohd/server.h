// SPDX-License-Identifier: Apache-2.0
// Server: oohd's epoll loop, on one thread. It owns the listening socket
// and the client connections, decodes requests and encodes replies (a
// collect's set in chunks); the sessions and backends behind them are the
// SessionTable's, whose backend work runs on threads of its own (see
// session_table.h). A connection's requests are read one at a time: the
// next is read once the previous one is answered, so replies come in the
// order of the requests, and a client whose request waits for its target
// holds up no one else.
#pragma once

#include "backend.h"
#include "ooh.pb.h"
#include "result.h"
#include "session_table.h"
#include "unique_fd.h"

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <sys/epoll.h>
#include <unordered_map>
#include <vector>

namespace ooh {

// How much of oohd one client may hold. Anyone may connect, so these keep
// one local user from locking out the others, root above all.
struct ServerLimits {
    size_t max_connections = 1024;       // lowered to fit RLIMIT_NOFILE
    size_t root_reserve = 64;            // of max_connections, only for uid 0
    size_t max_connections_per_uid = 64; // each uid but 0
    int handshake_timeout_ms = 10000;    // to say Hello, from accept
    size_t max_sessions = 4096;          // tracked processes in all
    size_t session_root_reserve = 256;   // of max_sessions, only for uid 0
    size_t max_sessions_per_uid = 256;   // tracked by each uid but 0
};

class Server : private FdWatcher {
public:
    explicit Server(std::vector<std::unique_ptr<Backend>> backends, ServerLimits limits = {});
    ~Server();

    // Runs every backend's feature probe and logs the outcome.
    void probeBackends();
    // Listens on `path` (creating its directory); or adopts an fd that is
    // already listening (systemd socket activation).
    Result<void> listenOn(const std::string &path);
    Result<void> adoptListener(int fd);
    // Serves a connected socket (tests use socketpair()).
    Result<void> addConnection(UniqueFD fd, const PeerCredentials &peer);

    // Serves until SIGINT/SIGTERM (or stop()).
    Result<void> run();
    void stop() { running_ = false; }
    // One round of the loop, waiting at most timeout_ms (for tests).
    Result<void> runOnce(int timeout_ms);

    size_t sessionCount() const { return sessions_.size(); }
    size_t connectionCount() const { return connections_.size(); }

private:
    struct Connection {
        UniqueFD fd;
        PeerCredentials peer;
        // Tells this connection from a later one that reuses its fd.
        uint64_t serial = 0;
        bool greeted = false;
        bool closing = false; // close once the queue is flushed
        // A request waits for the session table's answer: the next one is
        // not read before (replies come in the order of the requests).
        bool waiting = false;
        uint32_t events = EPOLLIN;      // what epoll watches for it
        uint64_t hello_deadline_ns = 0; // monotonic; closed if not greeted by then
        std::deque<std::string> out;
    };
    Result<void> watch(int fd, uint32_t events, std::function<void(uint32_t)> handler);
    // FdWatcher, for the session table: EPOLLIN only.
    Result<void> watch(int fd, std::function<void()> ready) override;
    void unwatch(int fd) override;

    void acceptClients();
    bool acceptWithoutFds(int err);
    // Why a client of `peer` may not connect now; empty if it may.
    std::optional<Error> refusal(const PeerCredentials &peer);
    void armHandshakeTimer(uint64_t deadline_ns);
    void closeSilentClients();
    // serial 0: whichever connection has fd now.
    Connection *findConnection(int fd, uint64_t serial = 0);
    void onConnectionReady(int fd, uint32_t events);
    void closeConnection(int fd);
    void flush(Connection &c);
    // Watches the fd for what c needs now (input unless waiting or
    // closing, output while replies are queued).
    void updateInterest(Connection &c);
    // updateInterest(), then closes c if it is closing with nothing queued.
    void settle(Connection &c);
    void send(Connection &c, const wire::Envelope &msg);
    void sendError(Connection &c, uint64_t id, const Error &err, bool fatal);

    void handle(Connection &c, const wire::Envelope &msg, std::vector<UniqueFD> passed);
    void handleTrack(Connection &c, uint64_t id, const wire::TrackRequest &req,
                     std::vector<UniqueFD> passed);
    void handleBackends(Connection &c, uint64_t id);
    void sendCollect(Connection &c, uint64_t id, const CollectResult &set);
    // Marks c waiting and returns the callback that answers its request
    // `id` once the session table has (then or later): the reply is
    // encoded by `encode(c, id[, result])`, or is the error; c then reads
    // its next request. Dropped if c has gone meanwhile.
    template <typename T, typename Encode>
    Done<T> replyTo(Connection &c, uint64_t id, Encode encode);

    UniqueFD epoll_;
    UniqueFD signal_fd_;
    UniqueFD listen_fd_;
    UniqueFD handshake_timer_;
    uint64_t timer_deadline_ns_ = 0; // 0: disarmed
    // Held so that a connection can still be accepted (and told why it is
    // refused) once oohd's fds run out, instead of spinning on EMFILE.
    UniqueFD spare_fd_;
    ServerLimits limits_;
    std::map<uid_t, size_t> connections_per_uid_;
    // When each warning about refused clients was last logged.
    std::map<uid_t, uint64_t> uid_warned_ns_;
    uint64_t full_warned_ns_ = 0;
    uint64_t fds_warned_ns_ = 0;
    std::string socket_path_; // unlinked at exit when we created it
    bool running_ = false;
    std::unordered_map<int, std::function<void(uint32_t)>> handlers_;
    std::unordered_map<int, Connection> connections_;
    uint64_t next_connection_serial_ = 1;
    // Last: destroyed first, while the loop it watches through still exists.
    SessionTable sessions_;
};

} // namespace ooh

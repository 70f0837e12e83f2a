// SPDX-License-Identifier: Apache-2.0
// Implementation of oohd/server.h.
#include "server.h"

#include "config.h"
#include "log.h"
#include "target.h"
#include "wire.h"

#include <csignal>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <optional>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <type_traits>
#include <unistd.h>

namespace ooh {

namespace {

constexpr const char *kLog = "server";
// Only a Track request carries fds: its pidfd and its access proof. A
// packet with more sets MSG_CTRUNC (the kernel closes the fds that did not
// fit), which tells it apart.
constexpr size_t kFdsSeenPerPacket = 2;
// The same warning about one client is logged at most this often.
constexpr uint64_t kWarnEveryNs = 60ull * 1000000000ull;
// Replies queued for one slow client before it is dropped (bytes).
constexpr size_t kMaxQueuedBytes = 256u << 20;

uint64_t monotonicNs()
{
    struct timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

Result<PeerCredentials> peerOf(int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return Error::fromErrno(errno, "SO_PEERCRED");
    return PeerCredentials{cred.pid, cred.uid, cred.gid};
}

// Tells a client oohd will not serve why, then lets the caller close it.
// A fresh socket has room for one reply; if not, the client only sees EOF.
void refuse(int fd, const Error &why)
{
    auto bytes = wire::encode(wire::errorReply(0, why.code, why.message));
    if (bytes)
        (void)::send(fd, bytes->data(), bytes->size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    // Closing with the client's Hello unread would make its first recv fail
    // with ECONNRESET instead of reading the reason: discard what it sent
    // (fds attached to it are closed by the kernel, not received).
    char discard[64];
    for (int i = 0; i < 8 && ::recv(fd, discard, sizeof(discard), MSG_DONTWAIT | MSG_TRUNC) > 0;
         ++i) {
    }
}

wire::Envelope trackReply(uint64_t id, const TrackResult &t)
{
    wire::Envelope reply;
    reply.set_request_id(id);
    auto *r = reply.mutable_track_reply();
    r->set_pid(t.pid);
    r->set_backend(t.backend);
    r->set_start_time(t.start_time);
    r->set_epoch(t.epoch);
    r->set_already_tracked(t.already_tracked);
    r->set_session_id(t.session_id);
    return reply;
}

wire::Envelope untrackReply(uint64_t id, int32_t pid)
{
    wire::Envelope reply;
    reply.set_request_id(id);
    reply.mutable_untrack_reply()->set_pid(pid);
    return reply;
}

wire::Envelope statsReply(uint64_t id, const StatsResult &s)
{
    wire::Envelope reply;
    reply.set_request_id(id);
    auto *st = reply.mutable_stats_reply();
    st->set_pid(s.pid);
    st->set_backend(s.backend);
    st->set_epoch(s.epoch);
    st->set_collects(s.stats.collects);
    st->set_pages_reported(s.stats.pages_reported);
    st->set_pages_wholesale(s.stats.pages_wholesale);
    st->set_last_collect_ns(s.stats.last_collect_ns);
    st->set_last_collect_pages(s.stats.last_collect_pages);
    st->set_tracked_since_ns(s.stats.tracked_since_ns);
    st->set_tracked_bytes(s.tracked_bytes);
    st->set_alive(s.alive);
    st->set_session_id(s.session_id);
    return reply;
}

// True at most once per kWarnEveryNs for the same *last.
bool timeToWarn(uint64_t *last)
{
    uint64_t now = monotonicNs();
    if (*last != 0 && now - *last < kWarnEveryNs)
        return false;
    *last = now;
    return true;
}

} // namespace

Server::Server(std::vector<std::unique_ptr<Backend>> backends, ServerLimits limits)
    : epoll_(::epoll_create1(EPOLL_CLOEXEC)), limits_(limits),
      sessions_(std::move(backends),
                SessionLimits{limits.max_sessions, limits.session_root_reserve,
                              limits.max_sessions_per_uid},
                *this)
{
    spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    handshake_timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (auto r = watch(handshake_timer_.get(), EPOLLIN, [this](uint32_t) { closeSilentClients(); });
        !r)
        OOH_LOG(kLog, Error) << "handshake timer: " << r.error().message
                             << "; clients that never say Hello are not dropped";
    // Connections may take half of oohd's fds; tracking sessions need the
    // rest (a pidfd, a userfaultfd, /proc files each).
    struct rlimit nofile;
    if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY &&
        limits_.max_connections > nofile.rlim_cur / 2) {
        limits_.max_connections = nofile.rlim_cur / 2;
        OOH_LOG(kLog, Warning) << "RLIMIT_NOFILE is " << nofile.rlim_cur << ": serving at most "
                               << limits_.max_connections << " clients";
    }
    limits_.root_reserve = std::min(limits_.root_reserve, limits_.max_connections / 2);
}

Server::~Server()
{
    if (!socket_path_.empty())
        ::unlink(socket_path_.c_str());
}

void Server::probeBackends() { sessions_.probeBackends(); }

Result<void> Server::watch(int fd, uint32_t events, std::function<void(uint32_t)> handler)
{
    struct epoll_event ev = {};
    ev.events = events;
    ev.data.fd = fd;
    int op = handlers_.count(fd) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (::epoll_ctl(epoll_.get(), op, fd, &ev) < 0)
        return Error::fromErrno(errno, "epoll_ctl");
    if (handler)
        handlers_[fd] = std::move(handler);
    return {};
}

Result<void> Server::watch(int fd, std::function<void()> ready)
{
    return watch(fd, EPOLLIN, [ready = std::move(ready)](uint32_t) { ready(); });
}

void Server::unwatch(int fd)
{
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    handlers_.erase(fd);
}

Result<void> Server::listenOn(const std::string &path)
{
    struct sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path))
        return makeError(ENAMETOOLONG, "socket path too long: " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);

    auto slash = path.rfind('/');
    if (slash != std::string::npos && slash > 0) {
        std::string dir = path.substr(0, slash);
        if (::mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST)
            return Error::fromErrno(errno, "create socket directory " + dir);
    }
    UniqueFD fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.isValid())
        return Error::fromErrno(errno, "socket");
    // A stale socket file from a previous run is replaced; a live daemon is not.
    UniqueFD probe(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (::connect(probe.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0)
        return makeError(EADDRINUSE, "another oohd is already listening on " + path);
    ::unlink(path.c_str());
    if (::bind(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) < 0)
        return Error::fromErrno(errno, "bind " + path);
    // Anyone may connect: a Track needs root or the client's own proof that
    // the kernel lets it trace the process (checkAccessProof), and a
    // session serves the uid that tracked it, and root.
    ::chmod(path.c_str(), 0666);
    socket_path_ = path;
    if (::listen(fd.get(), 64) < 0)
        return Error::fromErrno(errno, "listen " + path);
    OOH_LOG(kLog, Notice) << "listening on " << path;
    return adoptListener(fd.release());
}

Result<void> Server::adoptListener(int fd)
{
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    listen_fd_.reset(fd);
    return watch(fd, EPOLLIN, [this](uint32_t) { acceptClients(); });
}

void Server::acceptClients()
{
    for (;;) {
        UniqueFD fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd.isValid()) {
            if ((errno == EMFILE || errno == ENFILE) && spare_fd_.isValid() &&
                acceptWithoutFds(errno))
                continue;
            if (errno != EAGAIN && errno != EINTR)
                OOH_LOG(kLog, Warning) << "accept: " << std::strerror(errno);
            return;
        }
        auto peer = peerOf(fd.get());
        if (!peer) {
            OOH_LOG(kLog, Warning) << peer.error().message;
            continue;
        }
        if (auto why = refusal(*peer)) {
            refuse(fd.get(), *why);
            continue;
        }
        auto added = addConnection(std::move(fd), *peer);
        if (!added)
            OOH_LOG(kLog, Warning) << added.error().message;
    }
}

bool Server::acceptWithoutFds(int err)
{
    // The waiting client would keep the listener readable, and the loop
    // spinning: take it with the spare fd, tell it why, and close it.
    spare_fd_.reset();
    UniqueFD fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    const bool accepted = fd.isValid();
    if (accepted) {
        Error why = openFailure(err, "accept a client");
        refuse(fd.get(), why);
        if (timeToWarn(&fds_warned_ns_))
            OOH_LOG(kLog, Error) << why.message << "; refusing clients";
    }
    fd.reset();
    spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    return accepted;
}

std::optional<Error> Server::refusal(const PeerCredentials &peer)
{
    const size_t total = connections_.size();
    const std::string uid = "uid " + std::to_string(peer.uid);
    if (total >= limits_.max_connections) {
        if (timeToWarn(&full_warned_ns_))
            OOH_LOG(kLog, Warning) << "serving " << total << " clients, the most oohd serves; "
                                   << "refusing " << uid << " (pid " << peer.pid << ")";
        return makeError(EUSERS, "oohd serves " + std::to_string(total) +
                                     " clients, its limit; try again later");
    }
    if (peer.uid == 0)
        return std::nullopt;
    // The last root_reserve connections are root's: other users together
    // cannot lock it out.
    const size_t shared = limits_.max_connections - limits_.root_reserve;
    if (total >= shared) {
        if (timeToWarn(&full_warned_ns_))
            OOH_LOG(kLog, Warning) << "serving " << total << " clients; the rest is kept for root: "
                                   << "refusing " << uid << " (pid " << peer.pid << ")";
        return makeError(EUSERS, "oohd serves " + std::to_string(total) +
                                     " clients, the most it serves to users other than root; "
                                     "try again later (" +
                                     uid + ")");
    }
    auto mine = connections_per_uid_.find(peer.uid);
    if (mine != connections_per_uid_.end() && mine->second >= limits_.max_connections_per_uid) {
        if (timeToWarn(&uid_warned_ns_[peer.uid]))
            OOH_LOG(kLog, Warning) << uid << " holds " << mine->second
                                   << " connections, the most one user may; refusing more (pid "
                                   << peer.pid << "; a client that leaks connections?)";
        return makeError(EUSERS, uid + " already holds " + std::to_string(mine->second) +
                                     " connections to oohd, the most one user may; close some");
    }
    return std::nullopt;
}

Result<void> Server::addConnection(UniqueFD fd, const PeerCredentials &peer)
{
    int raw = fd.get();
    ::fcntl(raw, F_SETFL, ::fcntl(raw, F_GETFL) | O_NONBLOCK);
    Connection c;
    c.fd = std::move(fd);
    c.peer = peer;
    c.serial = next_connection_serial_++;
    if (limits_.handshake_timeout_ms > 0) {
        c.hello_deadline_ns =
            monotonicNs() + static_cast<uint64_t>(limits_.handshake_timeout_ms) * 1000000ull;
        armHandshakeTimer(c.hello_deadline_ns);
    }
    connections_.emplace(raw, std::move(c));
    connections_per_uid_[peer.uid]++;
    OOH_LOG(kLog, Debug) << "client connected: pid " << peer.pid << " uid " << peer.uid;
    auto w = watch(raw, EPOLLIN, [this, raw](uint32_t ev) { onConnectionReady(raw, ev); });
    if (!w)
        closeConnection(raw);
    return w;
}

void Server::closeConnection(int fd)
{
    auto it = connections_.find(fd);
    if (it == connections_.end())
        return;
    auto count = connections_per_uid_.find(it->second.peer.uid);
    if (count != connections_per_uid_.end() && --count->second == 0)
        connections_per_uid_.erase(count);
    unwatch(fd);
    connections_.erase(it);
}

void Server::armHandshakeTimer(uint64_t deadline_ns)
{
    if (!handshake_timer_.isValid() ||
        (timer_deadline_ns_ != 0 && timer_deadline_ns_ <= deadline_ns))
        return;
    struct itimerspec when = {};
    when.it_value.tv_sec = static_cast<time_t>(deadline_ns / 1000000000ull);
    when.it_value.tv_nsec = static_cast<long>(deadline_ns % 1000000000ull);
    if (::timerfd_settime(handshake_timer_.get(), TFD_TIMER_ABSTIME, &when, nullptr) == 0)
        timer_deadline_ns_ = deadline_ns;
}

void Server::closeSilentClients()
{
    uint64_t expirations;
    if (::read(handshake_timer_.get(), &expirations, sizeof(expirations)) < 0 && errno == EAGAIN)
        return;
    timer_deadline_ns_ = 0;
    const uint64_t now = monotonicNs();
    uint64_t next = 0;
    std::vector<int> silent;
    for (const auto &[fd, c] : connections_) {
        if (c.greeted || c.closing || c.hello_deadline_ns == 0)
            continue;
        if (c.hello_deadline_ns <= now)
            silent.push_back(fd);
        else if (next == 0 || c.hello_deadline_ns < next)
            next = c.hello_deadline_ns;
    }
    for (int fd : silent) {
        Connection &c = connections_.at(fd);
        OOH_LOG(kLog, Info) << "client pid " << c.peer.pid << " uid " << c.peer.uid
                            << " did not say Hello within " << limits_.handshake_timeout_ms
                            << " ms; closing its connection";
        sendError(c, 0,
                  makeError(ETIMEDOUT, "no Hello within " +
                                           std::to_string(limits_.handshake_timeout_ms) +
                                           " ms of connecting; oohd closes the connection"),
                  true);
        if (c.out.empty())
            closeConnection(fd);
    }
    if (next != 0)
        armHandshakeTimer(next);
}

Server::Connection *Server::findConnection(int fd, uint64_t serial)
{
    auto it = connections_.find(fd);
    if (it == connections_.end() || (serial != 0 && it->second.serial != serial))
        return nullptr;
    return &it->second;
}

void Server::onConnectionReady(int fd, uint32_t events)
{
    Connection *c = findConnection(fd);
    if (!c)
        return;
    const uint64_t serial = c->serial;
    if (events & EPOLLOUT)
        flush(*c);
    // Input is not watched while a request waits for its answer, but a
    // hang-up is always reported: the client left, and its answer will be
    // dropped.
    if ((events & (EPOLLHUP | EPOLLERR)) && c->waiting) {
        closeConnection(fd);
        return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        std::vector<char> buf(wire::kMaxMessageBytes + 1);
        // A bounded number of requests per wake-up keeps one client from
        // starving the others.
        for (int i = 0; i < 64; ++i) {
            // handle() may have answered and closed the connection, or left
            // the request with the session table: one request at a time.
            c = findConnection(fd, serial);
            if (!c || c->closing || c->waiting)
                break;
            // A Track request may carry its pidfd and access proof
            // (SCM_RIGHTS); a client may attach any number to anything, and
            // every fd received is owned by `passed` from here, so unused
            // ones are closed.
            union {
                char buf[CMSG_SPACE(sizeof(int) * kFdsSeenPerPacket)];
                struct cmsghdr align;
            } control;
            struct iovec iov = {buf.data(), buf.size()};
            struct msghdr mh = {};
            mh.msg_iov = &iov;
            mh.msg_iovlen = 1;
            mh.msg_control = control.buf;
            mh.msg_controllen = sizeof(control.buf);
            ssize_t n = ::recvmsg(fd, &mh, MSG_TRUNC | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
            std::vector<UniqueFD> passed;
            for (struct cmsghdr *cm = n >= 0 ? CMSG_FIRSTHDR(&mh) : nullptr; cm;
                 cm = CMSG_NXTHDR(&mh, cm)) {
                if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                    continue;
                size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t k = 0; k < count; ++k) {
                    int pfd;
                    std::memcpy(&pfd, CMSG_DATA(cm) + k * sizeof(int), sizeof(pfd));
                    passed.emplace_back(pfd);
                }
            }
            const bool fds_truncated = n >= 0 && (mh.msg_flags & MSG_CTRUNC);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    break;
                closeConnection(fd);
                return;
            }
            if (n == 0) {
                closeConnection(fd);
                return;
            }
            auto msg = wire::decode(buf.data(), static_cast<size_t>(n));
            if (!msg) {
                OOH_LOG(kLog, Info) << "client pid " << c->peer.pid << ": " << msg.error().message
                                    << "; closing its connection";
                sendError(*c, 0, msg.error(), true);
                break;
            }
            if (passed.size() > kFdsSeenPerPacket || fds_truncated) {
                const size_t count = passed.size();
                passed.clear(); // closed before the client hears back
                sendError(*c, msg->request_id(),
                          makeError(EINVAL, "a request carries at most two file descriptors (a "
                                            "Track request's pidfd and /proc/PID/mem); this one "
                                            "carried " +
                                                std::string(fds_truncated ? "more than " : "") +
                                                std::to_string(count)),
                          false);
                continue;
            }
            handle(*c, *msg, std::move(passed));
        }
    }
    if ((c = findConnection(fd, serial)))
        settle(*c);
}

void Server::settle(Connection &c)
{
    updateInterest(c);
    if (c.closing && c.out.empty())
        closeConnection(c.fd.get());
}

void Server::updateInterest(Connection &c)
{
    // Requests are read one at a time (see handle()), replies are sent as
    // room allows: one epoll_ctl per change, not per message.
    uint32_t events = 0;
    if (!c.waiting && !c.closing)
        events |= EPOLLIN;
    if (!c.out.empty())
        events |= EPOLLOUT;
    if (events == c.events)
        return;
    if (auto r = watch(c.fd.get(), events, nullptr); !r) {
        // Queued replies would never be sent: drop the client, not a reply.
        OOH_LOG(kLog, Warning) << "client pid " << c.peer.pid << ": " << r.error().message
                               << "; closing its connection";
        c.out.clear();
        c.closing = true;
        return;
    }
    c.events = events;
}

void Server::flush(Connection &c)
{
    while (!c.out.empty()) {
        const std::string &m = c.out.front();
        ssize_t n = ::send(c.fd.get(), m.data(), m.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            c.out.clear();
            c.closing = true;
            break;
        }
        c.out.pop_front();
    }
    updateInterest(c);
}

void Server::send(Connection &c, const wire::Envelope &msg)
{
    auto bytes = wire::encode(msg);
    if (!bytes) {
        OOH_LOG(kLog, Error) << "cannot encode reply: " << bytes.error().message;
        return;
    }
    size_t queued = 0;
    for (const auto &m : c.out)
        queued += m.size();
    if (queued > kMaxQueuedBytes) {
        OOH_LOG(kLog, Warning) << "client pid " << c.peer.pid << " does not read its replies; "
                               << "dropping it";
        c.out.clear();
        c.closing = true;
        return;
    }
    bool was_empty = c.out.empty();
    c.out.push_back(std::move(*bytes));
    if (was_empty)
        flush(c);
}

void Server::sendError(Connection &c, uint64_t id, const Error &err, bool fatal)
{
    send(c, wire::errorReply(id, err.code ? err.code : EIO, err.message));
    if (fatal)
        c.closing = true;
}

void Server::handle(Connection &c, const wire::Envelope &msg, std::vector<UniqueFD> passed)
{
    const uint64_t id = msg.request_id();
    // An fd that came with anything but a Track request is closed before
    // the reply, so a client that has its answer has its fd back.
    if (!c.greeted || msg.body_case() != wire::Envelope::kTrack)
        passed.clear();
    if (!c.greeted) {
        if (msg.body_case() != wire::Envelope::kHello) {
            sendError(c, id, makeError(EPROTO, "protocol error: the first message must be Hello"),
                      true);
            return;
        }
        if (msg.hello().protocol_version() != wire::kProtocolVersion) {
            sendError(
                c, id,
                makeError(EPROTONOSUPPORT, "protocol version " +
                                               std::to_string(msg.hello().protocol_version()) +
                                               " is not supported (oohd speaks version " +
                                               std::to_string(wire::kProtocolVersion) + ")"),
                true);
            return;
        }
        c.greeted = true;
        wire::Envelope reply;
        reply.set_request_id(id);
        auto *h = reply.mutable_hello_reply();
        h->set_protocol_version(wire::kProtocolVersion);
        h->set_daemon_version(OOH_VERSION);
        h->set_max_message_bytes(wire::kMaxMessageBytes);
        send(c, reply);
        return;
    }
    switch (msg.body_case()) {
    case wire::Envelope::kTrack: return handleTrack(c, id, msg.track(), std::move(passed));
    case wire::Envelope::kUntrack: {
        const int32_t pid = msg.untrack().pid();
        return sessions_.untrack(c.peer, pid,
                                 replyTo<void>(c, id, [this, pid](Connection &c, uint64_t id) {
                                     send(c, untrackReply(id, pid));
                                 }));
    }
    case wire::Envelope::kCollect:
        return sessions_.collect(
            c.peer, msg.collect().pid(), msg.collect().start_time(), msg.collect().session_id(),
            replyTo<CollectResult>(c, id, [this](Connection &c, uint64_t id, CollectResult &set) {
                sendCollect(c, id, set);
            }));
    case wire::Envelope::kStats:
        return sessions_.stats(
            c.peer, msg.stats().pid(),
            replyTo<StatsResult>(c, id, [this](Connection &c, uint64_t id, StatsResult &s) {
                send(c, statsReply(id, s));
            }));
    case wire::Envelope::kBackends: return handleBackends(c, id);
    default:
        sendError(c, id,
                  makeError(EPROTO, "protocol error: unexpected message type " +
                                        std::to_string(msg.body_case())),
                  true);
    }
}

// Connections are found again by fd and serial: the one that asked may have
// gone, and its fd may now be another client's.
template <typename T, typename Encode>
Done<T> Server::replyTo(Connection &c, uint64_t id, Encode encode)
{
    c.waiting = true;
    return [this, fd = c.fd.get(), serial = c.serial, id, encode](Result<T> r) mutable {
        Connection *c = findConnection(fd, serial);
        if (!c)
            return; // the client left; the answer is dropped
        c->waiting = false;
        if (!r)
            sendError(*c, id, r.error(), false);
        else if constexpr (std::is_void_v<T>)
            encode(*c, id);
        else
            encode(*c, id, *r);
        settle(*c);
    };
}

void Server::handleTrack(Connection &c, uint64_t id, const wire::TrackRequest &req,
                         std::vector<UniqueFD> passed)
{
    // Every fd passed is closed before the client hears back.
    const size_t want = (req.by_pidfd() ? 1 : 0) + (req.access_proof() ? 1 : 0);
    const size_t got = passed.size();
    if (got != want) {
        passed.clear();
        return sendError(c, id,
                         makeError(EBADF, "track: " + std::to_string(want) +
                                              " file descriptor(s) announced (pidfd, "
                                              "/proc/PID/mem), " +
                                              std::to_string(got) + " came with the request"),
                         false);
    }
    UniqueFD proof = req.access_proof() ? std::move(passed.back()) : UniqueFD();
    auto opened =
        req.by_pidfd() ? Target::fromPidfd(std::move(passed.front())) : Target::open(req.pid());
    if (!opened) {
        proof.reset();
        return sendError(c, id, opened.error(), false);
    }
    // Decided on the process as opened (its pidfd), not on a pid that may
    // be reused in between, and by the kernel, not by a copy of its rules.
    auto allowed = opened->checkAccessProof(c.peer, proof);
    proof.reset();
    if (!allowed)
        return sendError(c, id, allowed.error(), false);
    sessions_.track(c.peer, std::move(*opened), req.backend(),
                    replyTo<TrackResult>(c, id, [this](Connection &c, uint64_t id, TrackResult &t) {
                        send(c, trackReply(id, t));
                    }));
}

void Server::sendCollect(Connection &c, uint64_t id, const CollectResult &set)
{
    const auto &ranges = set.ranges;
    size_t i = 0;
    do {
        wire::Envelope reply;
        reply.set_request_id(id);
        auto *chunk = reply.mutable_collect_chunk();
        chunk->set_pid(set.pid);
        chunk->set_epoch(set.epoch);
        chunk->set_page_size(static_cast<uint32_t>(set.page_size));
        chunk->set_total_ranges(ranges.size());
        chunk->set_total_pages(set.pages);
        chunk->set_all_changes(set.all_changes);
        size_t end = std::min(ranges.size(), i + wire::kMaxRangesPerChunk);
        wire::encodeRanges(chunk, ranges.data() + i, end - i, set.page_size);
        i = end;
        chunk->set_last(i == ranges.size());
        send(c, reply);
    } while (i < ranges.size());
}

void Server::handleBackends(Connection &c, uint64_t id)
{
    wire::Envelope reply;
    reply.set_request_id(id);
    auto *list = reply.mutable_backends_reply();
    for (const auto &e : sessions_.backends()) {
        auto *b = list->add_backends();
        b->set_name(e.name);
        b->set_available(e.probe.available);
        b->set_reason(e.probe.reason);
        b->set_is_default(e.is_default);
    }
    send(c, reply);
}

Result<void> Server::runOnce(int timeout_ms)
{
    struct epoll_event events[64];
    int n = ::epoll_wait(epoll_.get(), events, 64, timeout_ms);
    if (n < 0) {
        if (errno == EINTR)
            return {};
        return Error::fromErrno(errno, "epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
        auto it = handlers_.find(events[i].data.fd);
        if (it == handlers_.end())
            continue;
        auto handler = it->second; // the handler may unwatch itself
        handler(events[i].events);
    }
    return {};
}

Result<void> Server::run()
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    ::sigprocmask(SIG_BLOCK, &mask, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    signal_fd_.reset(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signal_fd_.isValid())
        return Error::fromErrno(errno, "signalfd");
    OOH_TRY(watch(signal_fd_.get(), EPOLLIN, [this](uint32_t) {
        struct signalfd_siginfo si;
        if (::read(signal_fd_.get(), &si, sizeof(si)) == sizeof(si))
            OOH_LOG(kLog, Notice) << "signal " << si.ssi_signo << ": shutting down";
        running_ = false;
    }));
    running_ = true;
    while (running_)
        OOH_TRY(runOnce(-1));
    return {};
}

} // namespace ooh

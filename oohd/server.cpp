// SPDX-License-Identifier: Apache-2.0
// Implementation of oohd/server.h.
#include "server.h"

#include "config.h"
#include "inject/remote_syscall.h"
#include "log.h"
#include "target.h"
#include "wire.h"

#include <csignal>
#include <optional>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
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
    : limits_(limits)
{
    for (auto &b : backends)
        backends_.push_back({std::move(b), {}});
    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
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

void Server::probeBackends()
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
    // session serves its owner or root.
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
                                     "try again later (" + uid + ")");
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

void Server::onConnectionReady(int fd, uint32_t events)
{
    auto it = connections_.find(fd);
    if (it == connections_.end())
        return;
    Connection &c = it->second;
    if (events & EPOLLOUT)
        flush(c);
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c.closing) {
        std::vector<char> buf(wire::kMaxMessageBytes + 1);
        // A bounded number of requests per wake-up keeps one client from
        // starving the others.
        for (int i = 0; i < 64 && !c.closing; ++i) {
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
                OOH_LOG(kLog, Info) << "client pid " << c.peer.pid << ": " << msg.error().message
                                    << "; closing its connection";
                sendError(c, 0, msg.error(), true);
                break;
            }
            if (passed.size() > kFdsSeenPerPacket || fds_truncated) {
                const size_t count = passed.size();
                passed.clear();  // closed before the client hears back
                sendError(c, msg->request_id(),
                          makeError(EINVAL, "a request carries at most two file descriptors (a "
                                            "Track request's pidfd and /proc/PID/mem); this one "
                                            "carried " +
                                                std::string(fds_truncated ? "more than " : "") +
                                                std::to_string(count)),
                          false);
                continue;
            }
            handle(c, *msg, std::move(passed));
        }
    }
    if (connections_.count(fd) && c.closing && c.out.empty())
        closeConnection(fd);
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
    // Ask for EPOLLOUT only while replies wait for room: one epoll_ctl per
    // change, not per reply.
    bool wants_out = !c.out.empty();
    if (wants_out == c.wants_out)
        return;
    if (auto r = watch(c.fd.get(), wants_out ? EPOLLIN | EPOLLOUT : EPOLLIN, nullptr); !r) {
        // Queued replies would never be sent: drop the client, not a reply.
        OOH_LOG(kLog, Warning) << "client pid " << c.peer.pid << ": " << r.error().message
                               << "; closing its connection";
        c.out.clear();
        c.closing = true;
        return;
    }
    c.wants_out = wants_out;
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
            sendError(c, id,
                      makeError(EPROTONOSUPPORT,
                                "protocol version " +
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
    case wire::Envelope::kTrack:
        return handleTrack(c, id, msg.track(), std::move(passed));
    case wire::Envelope::kUntrack:
        return handleUntrack(c, id, msg.untrack());
    case wire::Envelope::kCollect:
        return handleCollect(c, id, msg.collect());
    case wire::Envelope::kStats:
        return handleStats(c, id, msg.stats());
    case wire::Envelope::kBackends:
        return handleBackends(c, id);
    default:
        sendError(c, id,
                  makeError(EPROTO, "protocol error: unexpected message type " +
                                        std::to_string(msg.body_case())),
                  true);
    }
}

Server::BackendEntry *Server::chooseBackend(const std::string &name, Error *why)
{
    for (auto &e : backends_) {
        if (!name.empty() && e.backend->name() != name)
            continue;
        if (e.probe.available)
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

namespace {

wire::Envelope trackReply(uint64_t id, const Session &s, bool already_tracked)
{
    wire::Envelope reply;
    reply.set_request_id(id);
    auto *t = reply.mutable_track_reply();
    t->set_pid(s.process.pid());
    t->set_backend(s.backend);
    t->set_start_time(s.process.startTime());
    t->set_epoch(s.epoch);
    t->set_already_tracked(already_tracked);
    return reply;
}

} // namespace


// Whether uid may start one more session; an empty message if so. Sessions
// of exited processes are kept only to tell their owner, so they make room
// first. One user tracking its own processes must not take every slot:
// each uid but root has a share, and the last slots are kept for root.
Error Server::sessionLimit(uid_t uid)
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
    const size_t shared = limits_.max_sessions - std::min(limits_.session_root_reserve,
                                                          limits_.max_sessions);
    if (all >= (uid == 0 ? limits_.max_sessions : shared) ||
        (uid != 0 && mine >= limits_.max_sessions_per_uid)) {
        std::vector<pid_t> ended;
        for (const auto &[p, s] : sessions_)
            if (s.state != Session::State::Active)
                ended.push_back(p);
        for (pid_t p : ended)
            endSession(p);
        std::tie(all, mine) = count();
    }
    if (uid != 0 && mine >= limits_.max_sessions_per_uid) {
        OOH_LOG(kLog, Warning) << "uid " << uid << " tracks " << mine
                               << " processes, its limit: refused one more";
        return makeError(EUSERS, "uid " + std::to_string(uid) + " already tracks " +
                                     std::to_string(mine) + " processes, the most oohd allows "
                                     "one user but root (--max-sessions-per-uid); untrack some");
    }
    if (all >= (uid == 0 ? limits_.max_sessions : shared))
        return makeError(ENOSPC, "oohd tracks " + std::to_string(all) + " processes" +
                                     (uid == 0 ? ", its limit"
                                               : "; the remaining " +
                                                     std::to_string(limits_.max_sessions - shared) +
                                                     " are kept for root"));
    return Error{};
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
                                              "/proc/PID/mem), " + std::to_string(got) +
                                              " came with the request"),
                         false);
    }
    UniqueFD proof = req.access_proof() ? std::move(passed.back()) : UniqueFD();
    pid_t pid = req.pid();
    std::optional<Target> given;
    auto opened = req.by_pidfd() ? Target::fromPidfd(std::move(passed.front()))
                                 : Target::open(pid);
    if (!opened) {
        proof.reset();
        return sendError(c, id, opened.error(), false);
    }
    pid = opened->pid();
    given = std::move(*opened);
    // Decided on the process as opened (its pidfd), not on a pid that may
    // be reused in between, and by the kernel, not by a copy of its rules.
    auto allowed = given->checkAccessProof(c.peer, proof);
    proof.reset();
    if (!allowed)
        return sendError(c, id, allowed.error(), false);

    auto existing = sessions_.find(pid);
    if (existing != sessions_.end()) {
        Session &s = existing->second;
        bool same = s.state == Session::State::Active && s.process.isAlive() &&
                    given->startTime() == s.process.startTime();
        if (same) {
            if (!req.backend().empty() && req.backend() != s.backend)
                return sendError(c, id,
                                 makeError(EEXIST, "pid " + std::to_string(pid) +
                                                       " is already tracked with backend " +
                                                       s.backend + "; untrack it first"),
                                 false);
            return send(c, trackReply(id, s, true));
        }
        endSession(pid);  // exited, lost or a reused pid: start afresh
    }
    if (auto full = sessionLimit(c.peer.uid); !full.message.empty())
        return sendError(c, id, full, false);

    Error why;
    BackendEntry *entry = chooseBackend(req.backend(), &why);
    if (!entry)
        return sendError(c, id, why, false);
    auto tracker = entry->backend->track(*given);
    if (!tracker) {
        OOH_LOG(kLog, Notice) << "track pid " << pid << " failed: " << tracker.error().message;
        return sendError(c, id, tracker.error(), false);
    }

    Session s;
    s.process = std::move(*given);
    s.backend = std::string(entry->backend->name());
    s.tracker = std::move(*tracker);
    s.owner_uid = c.peer.uid;
    s.stats.tracked_since_ns = monotonicNs();
    auto [it, inserted] = sessions_.emplace(pid, std::move(s));
    Session &session = it->second;
    auto w = watch(session.process.pidfd(), EPOLLIN, [this, pid](uint32_t) { markExited(pid); });
    if (w && session.tracker->eventFd() >= 0) {
        int efd = session.tracker->eventFd();
        w = watch(efd, EPOLLIN, [this, pid](uint32_t) {
            auto s = sessions_.find(pid);
            if (s == sessions_.end() || !s->second.tracker)
                return;
            auto r = s->second.tracker->handleEvents();
            if (!r)
                markLost(s->second, r.error().message);
        });
    }
    if (!w) {
        endSession(pid);
        return sendError(c, id, w.error(), false);
    }
    OOH_LOG(kLog, Notice) << "tracking pid " << pid << " with " << session.backend << " for uid "
                          << c.peer.uid;
    send(c, trackReply(id, session, false));
}

Result<Session *> Server::sessionFor(const Connection &c, int32_t pid)
{
    auto it = sessions_.find(pid);
    if (it == sessions_.end())
        return makeError(ENOENT, "pid " + std::to_string(pid) +
                                     " is not tracked (never tracked, untracked, or oohd "
                                     "restarted and tracking was lost); track it again");
    Session &s = it->second;
    // Someone else's session: allowed only to who could have tracked it.
    if (c.peer.uid != 0 && c.peer.uid != s.owner_uid)
        return makeError(EPERM, "pid " + std::to_string(pid) + " is tracked by uid " +
                                    std::to_string(s.owner_uid) + "; uid " +
                                    std::to_string(c.peer.uid) + " may not use that session");
    if (s.state == Session::State::Active) {
        if (auto ok = checkPeerMayTrace(c.peer, pid); !ok && ok.error().code == EPERM)
            return ok.takeError();
    }
    return &s;
}

void Server::endSession(pid_t pid)
{
    auto it = sessions_.find(pid);
    if (it == sessions_.end())
        return;
    if (it->second.tracker && it->second.tracker->eventFd() >= 0)
        unwatch(it->second.tracker->eventFd());
    unwatch(it->second.process.pidfd());
    sessions_.erase(it);
}

void Server::markExited(pid_t pid)
{
    auto it = sessions_.find(pid);
    if (it == sessions_.end())
        return;
    Session &s = it->second;
    OOH_LOG(kLog, Info) << "tracked pid " << pid << " exited";
    if (s.tracker && s.tracker->eventFd() >= 0)
        unwatch(s.tracker->eventFd());
    unwatch(s.process.pidfd());
    s.tracker.reset();  // releases the userfaultfd and /proc handles now
    s.state = Session::State::Exited;
}

void Server::markLost(Session &s, const std::string &reason)
{
    OOH_LOG(kLog, Warning) << "pid " << s.process.pid() << ": tracking lost: " << reason;
    if (s.tracker && s.tracker->eventFd() >= 0)
        unwatch(s.tracker->eventFd());
    s.tracker.reset();
    s.state = Session::State::Lost;
    s.lost_reason = reason;
}

void Server::handleUntrack(Connection &c, uint64_t id, const wire::UntrackRequest &req)
{
    auto s = sessionFor(c, req.pid());
    if (!s)
        return sendError(c, id, s.error(), false);
    endSession(req.pid());
    OOH_LOG(kLog, Notice) << "untracked pid " << req.pid();
    wire::Envelope reply;
    reply.set_request_id(id);
    reply.mutable_untrack_reply()->set_pid(req.pid());
    send(c, reply);
}

void Server::handleCollect(Connection &c, uint64_t id, const wire::CollectRequest &req)
{
    pid_t pid = req.pid();
    auto found = sessionFor(c, pid);
    if (!found)
        return sendError(c, id, found.error(), false);
    Session &s = **found;
    if (req.start_time() != 0 && req.start_time() != s.process.startTime())
        return sendError(c, id,
                         makeError(ESRCH, "pid " + std::to_string(pid) +
                                              " is now another process (start time differs)"),
                         false);
    if (s.state == Session::State::Active && !s.process.isAlive())
        markExited(pid);
    if (s.state == Session::State::Exited) {
        endSession(pid);
        return sendError(c, id, makeError(ESRCH, "tracked pid " + std::to_string(pid) + " exited"),
                         false);
    }
    if (s.state == Session::State::Lost)
        return sendError(c, id,
                         makeError(EIO, "tracking of pid " + std::to_string(pid) +
                                            " was lost (" + s.lost_reason +
                                            "); untrack and track it again"),
                         false);

    uint64_t t0 = monotonicNs();
    std::vector<PageRange> raw;
    auto r = s.tracker->collect(raw);
    if (!r) {
        if (!s.process.isAlive()) {
            endSession(pid);
            return sendError(c, id,
                             makeError(ESRCH, "tracked pid " + std::to_string(pid) + " exited"),
                             false);
        }
        markLost(s, r.error().message);
        return sendError(c, id,
                         makeError(EIO, "tracking of pid " + std::to_string(pid) +
                                            " was lost: " + r.error().message),
                         false);
    }
    std::vector<PageRange> ranges = normalizeRanges(std::move(raw));
    const uint64_t page_size = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    uint64_t pages = countPages(ranges, page_size);
    uint64_t wholesale = 0;
    for (const auto &x : ranges)
        if (x.wholesale)
            wholesale += x.bytes() / page_size;
    uint64_t epoch = s.epoch++;
    s.stats.collects++;
    s.stats.pages_reported += pages;
    s.stats.pages_wholesale += wholesale;
    s.stats.last_collect_pages = pages;
    s.stats.last_collect_ns = monotonicNs() - t0;
    OOH_LOG(kLog, Debug) << "collect pid " << pid << " epoch " << epoch << ": " << pages
                         << " pages in " << ranges.size() << " ranges, "
                         << s.stats.last_collect_ns / 1000 << " us";

    size_t i = 0;
    do {
        wire::Envelope reply;
        reply.set_request_id(id);
        auto *chunk = reply.mutable_collect_chunk();
        chunk->set_pid(pid);
        chunk->set_epoch(epoch);
        chunk->set_page_size(static_cast<uint32_t>(page_size));
        chunk->set_total_ranges(ranges.size());
        chunk->set_total_pages(pages);
        size_t end = std::min(ranges.size(), i + wire::kMaxRangesPerChunk);
        wire::encodeRanges(chunk, ranges.data() + i, end - i, page_size);
        i = end;
        chunk->set_last(i == ranges.size());
        send(c, reply);
    } while (i < ranges.size());
}

void Server::handleStats(Connection &c, uint64_t id, const wire::StatsRequest &req)
{
    auto found = sessionFor(c, req.pid());
    if (!found)
        return sendError(c, id, found.error(), false);
    Session &s = **found;
    wire::Envelope reply;
    reply.set_request_id(id);
    auto *st = reply.mutable_stats_reply();
    st->set_pid(req.pid());
    st->set_backend(s.backend);
    st->set_epoch(s.epoch);
    st->set_collects(s.stats.collects);
    st->set_pages_reported(s.stats.pages_reported);
    st->set_pages_wholesale(s.stats.pages_wholesale);
    st->set_last_collect_ns(s.stats.last_collect_ns);
    st->set_last_collect_pages(s.stats.last_collect_pages);
    st->set_tracked_since_ns(s.stats.tracked_since_ns);
    st->set_registered_bytes(s.tracker ? s.tracker->trackedBytes() : 0);
    st->set_alive(s.state == Session::State::Active && s.process.isAlive());
    send(c, reply);
}

void Server::handleBackends(Connection &c, uint64_t id)
{
    wire::Envelope reply;
    reply.set_request_id(id);
    auto *list = reply.mutable_backends_reply();
    bool have_default = false;
    for (const auto &e : backends_) {
        auto *b = list->add_backends();
        b->set_name(std::string(e.backend->name()));
        b->set_available(e.probe.available);
        b->set_reason(e.probe.reason);
        b->set_is_default(e.probe.available && !have_default);
        have_default |= e.probe.available;
    }
    send(c, reply);
}

Result<void> Server::runOnce(int timeout_ms)
{
    // Threads that did not stop for an injection are detached once they do.
    if (reapStrayTracees() > 0 && (timeout_ms < 0 || timeout_ms > 100))
        timeout_ms = 100;
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
        auto handler = it->second;  // the handler may unwatch itself
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

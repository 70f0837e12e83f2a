// SPDX-License-Identifier: Apache-2.0
// libooh: the C API of oohd (include/ooh/ooh.h), a blocking client over the
// SOCK_SEQPACKET protocol. No exception leaves this file.
#include "ooh/ooh.h"

#include "pidfd.h"
#include "wire.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <new>
#include <string>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>

using ooh::wire::Envelope;

struct ooh_client {
    int fd = -1;
    unsigned reply_timeout_ms = OOH_DEFAULT_REPLY_TIMEOUT_MS;
    uint64_t next_id = 1;
    std::string error;
    // Collect state between ooh_collect_begin() and the end of the set.
    bool collecting = false;
    bool collect_done = false;
    uint64_t collect_id = 0;
    std::vector<ooh::PageRange> pending; // decoded, not yet handed out
    size_t pending_pos = 0;
};

namespace {

int fail(ooh_client *c, int err, const std::string &message)
{
    if (err < 0)
        err = -err;
    if (c)
        c->error = message;
    return -err;
}

int fail(ooh_client *c, const ooh::Error &e) { return fail(c, e.code ? e.code : EIO, e.message); }

// Every wait for oohd is bounded: a stopped or wedged oohd must not hang
// its client (CRIU, frozen targets and all) forever.
int applyReplyTimeout(ooh_client *c)
{
    struct timeval tv = {static_cast<time_t>(c->reply_timeout_ms / 1000),
                         static_cast<suseconds_t>(c->reply_timeout_ms % 1000) * 1000};
    if (::setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        ::setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
        return fail(c, errno, std::string("setsockopt(SO_RCVTIMEO): ") + std::strerror(errno));
    return 0;
}

// One message from oohd. A timeout leaves the connection out of step (a
// late reply would answer the next request), so it is closed.
ooh::Result<Envelope> receive(ooh_client *c)
{
    auto msg = ooh::wire::receiveMessage(c->fd);
    if (!msg && (msg.error().code == EAGAIN || msg.error().code == EWOULDBLOCK)) {
        ::close(c->fd);
        c->fd = -1;
        c->collecting = false;
        return ooh::makeError(ETIMEDOUT,
                              "oohd did not answer within " +
                                  std::to_string(c->reply_timeout_ms / 1000.0).substr(0, 5) +
                                  " s (is it stopped or overloaded?); the connection is closed");
    }
    return msg;
}

// Sends a request and receives the reply with the same id. An Error reply
// becomes the negative errno it carries.
int roundTrip(ooh_client *c, Envelope &req, Envelope *reply, int pass_fd = -1, int pass_fd2 = -1)
{
    if (!c || c->fd < 0)
        return fail(c, ENOTCONN, "not connected to oohd");
    if (c->collecting)
        return fail(c, EBUSY, "a collect is in progress: read it to the end first");
    req.set_request_id(c->next_id++);
    if (auto r = ooh::wire::sendMessage(c->fd, req, pass_fd, pass_fd2); !r) {
        // oohd may have closed the connection with the reason waiting in it
        // (a refused client: too many connections, no Hello in time).
        if (r.error().code == EPIPE || r.error().code == ECONNRESET) {
            auto why = ooh::wire::receiveMessage(c->fd);
            if (why && why->has_error())
                return fail(c, why->error().errno_code() > 0 ? why->error().errno_code() : EIO,
                            why->error().message());
        }
        return fail(c, r.error());
    }
    auto msg = receive(c);
    if (!msg)
        return fail(c, msg.error());
    if (msg->request_id() != req.request_id() && msg->request_id() != 0)
        return fail(c, EPROTO, "reply does not match the request");
    if (msg->has_error())
        return fail(c, msg->error().errno_code() > 0 ? msg->error().errno_code() : EIO,
                    msg->error().message());
    *reply = std::move(*msg);
    return 0;
}

// /proc/PID/mem, opened here: the kernel lets us open it only if we may
// ptrace the process, and oohd takes it as the proof (access_proof in
// ooh.proto). Opened and closed, it reads nothing.
int openAccessProof(ooh_client *c, pid_t pid)
{
    std::string path = "/proc/" + std::to_string(pid) + "/mem";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0)
        return fd;
    int err = errno;
    if (err == ENOENT)
        return fail(c, ESRCH, "no process " + std::to_string(pid));
    return fail(c, err == EACCES ? EPERM : err,
                "the kernel does not let this process trace pid " + std::to_string(pid) +
                    " (open " + path + ": " + std::strerror(err) +
                    "), so oohd will not track it for us either");
}

void copyString(char *dst, size_t size, const std::string &src)
{
    size_t n = std::min(size - 1, src.size());
    std::memcpy(dst, src.data(), n);
    dst[n] = '\0';
}

} // namespace

extern "C" {

int ooh_connect(const char *socket_path, ooh_client **out)
{
    if (!out)
        return -EINVAL;
    *out = nullptr;
    auto *c = new (std::nothrow) ooh_client;
    if (!c)
        return -ENOMEM;
    *out = c;
    std::string path = socket_path && *socket_path   ? socket_path
                       : std::getenv(OOH_SOCKET_ENV) ? std::getenv(OOH_SOCKET_ENV)
                                                     : OOH_DEFAULT_SOCKET_PATH;
    struct sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path))
        return fail(c, ENAMETOOLONG, "socket path too long: " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    c->fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return fail(c, errno, std::string("socket: ") + std::strerror(errno));
    if (int r = applyReplyTimeout(c); r < 0)
        return r;
    if (::connect(c->fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) < 0) {
        int err = errno;
        ::close(c->fd);
        c->fd = -1;
        return fail(c, err,
                    "cannot connect to oohd at " + path + ": " + std::strerror(err) +
                        (err == ENOENT || err == ECONNREFUSED
                             ? " (is oohd running? start it with `oohd` or "
                               "`systemctl start oohd.socket`)"
                             : ""));
    }
    Envelope req, reply;
    req.mutable_hello()->set_protocol_version(ooh::wire::kProtocolVersion);
    req.mutable_hello()->set_client_name("libooh");
    if (int r = roundTrip(c, req, &reply); r < 0)
        return r;
    if (!reply.has_hello_reply())
        return fail(c, EPROTO, "oohd did not answer the handshake");
    return 0;
}

int ooh_set_reply_timeout(ooh_client *c, unsigned timeout_ms)
{
    if (!c || c->fd < 0)
        return fail(c, ENOTCONN, "not connected to oohd");
    c->reply_timeout_ms = timeout_ms;
    return applyReplyTimeout(c);
}

void ooh_close(ooh_client *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        ::close(c->fd);
    delete c;
}

const char *ooh_last_error(const ooh_client *c)
{
    return c ? c->error.c_str() : "no client (out of memory?)";
}

int ooh_track_session(ooh_client *c, pid_t pid, int pidfd, const char *backend,
                      struct ooh_session *session)
{
    if (pidfd >= 0) {
        auto owner = ooh::pidOfPidfd(pidfd);
        if (!owner)
            return fail(c, owner.error());
        if (*owner == 0)
            return fail(c, ESRCH,
                        "the process of the pidfd has exited (or is not in this PID namespace)");
        pid = *owner;
    }
    int proof = openAccessProof(c, pid);
    if (proof < 0)
        return proof;
    Envelope req, reply;
    if (pidfd >= 0)
        req.mutable_track()->set_by_pidfd(true);
    else
        req.mutable_track()->set_pid(pid);
    req.mutable_track()->set_access_proof(true);
    if (backend)
        req.mutable_track()->set_backend(backend);
    int r = pidfd >= 0 ? roundTrip(c, req, &reply, pidfd, proof) : roundTrip(c, req, &reply, proof);
    ::close(proof);
    if (r < 0)
        return r;
    if (!reply.has_track_reply())
        return fail(c, EPROTO, "unexpected reply to track");
    const auto &t = reply.track_reply();
    if (session) {
        std::memset(session, 0, sizeof(*session));
        session->id = t.session_id();
        session->start_time = t.start_time();
        session->epoch = t.epoch();
        session->pid = t.pid();
        session->already_tracked = t.already_tracked() ? 1 : 0;
        copyString(session->backend, sizeof(session->backend), t.backend());
    }
    return t.already_tracked() ? 1 : 0;
}

int ooh_track(ooh_client *c, pid_t pid, const char *backend, uint64_t *start_time)
{
    struct ooh_session s;
    int r = ooh_track_session(c, pid, -1, backend, &s);
    if (r >= 0 && start_time)
        *start_time = s.start_time;
    return r;
}

int ooh_track_pidfd(ooh_client *c, int pidfd, const char *backend, pid_t *tracked_pid,
                    uint64_t *start_time)
{
    if (pidfd < 0)
        return fail(c, EBADF, "invalid pidfd");
    struct ooh_session s;
    int r = ooh_track_session(c, 0, pidfd, backend, &s);
    if (r < 0)
        return r;
    if (tracked_pid)
        *tracked_pid = s.pid;
    if (start_time)
        *start_time = s.start_time;
    return r;
}

int ooh_untrack(ooh_client *c, pid_t pid)
{
    Envelope req, reply;
    req.mutable_untrack()->set_pid(pid);
    if (int r = roundTrip(c, req, &reply); r < 0)
        return r;
    return reply.has_untrack_reply() ? 0 : fail(c, EPROTO, "unexpected reply to untrack");
}

static int takeChunk(ooh_client *c, const ooh::wire::CollectChunk &chunk)
{
    if (c->pending_pos == c->pending.size()) {
        c->pending.clear();
        c->pending_pos = 0;
    }
    if (auto r = ooh::wire::decodeRanges(chunk, c->pending); !r) {
        c->collecting = false;
        return fail(c, r.error());
    }
    c->collect_done = chunk.last();
    return 0;
}

static int collectBegin(ooh_client *c, pid_t pid, uint64_t start_time, uint64_t session_id,
                        struct ooh_collect_info *info)
{
    Envelope req, reply;
    req.mutable_collect()->set_pid(pid);
    req.mutable_collect()->set_start_time(start_time);
    req.mutable_collect()->set_session_id(session_id);
    if (int r = roundTrip(c, req, &reply); r < 0)
        return r;
    if (!reply.has_collect_chunk())
        return fail(c, EPROTO, "unexpected reply to collect");
    const auto &chunk = reply.collect_chunk();
    if (info) {
        info->epoch = chunk.epoch();
        info->page_size = chunk.page_size();
        info->flags = chunk.all_changes() ? OOH_COLLECT_ALL_CHANGES : 0;
        info->total_ranges = chunk.total_ranges();
        info->total_pages = chunk.total_pages();
    }
    c->pending.clear();
    c->pending_pos = 0;
    c->collect_id = reply.request_id();
    c->collecting = true;
    return takeChunk(c, chunk);
}

int ooh_collect_begin(ooh_client *c, pid_t pid, uint64_t start_time, struct ooh_collect_info *info)
{
    return collectBegin(c, pid, start_time, 0, info);
}

int ooh_collect_session_begin(ooh_client *c, const struct ooh_session *session,
                              struct ooh_collect_info *info)
{
    if (!session)
        return fail(c, EINVAL, "no session");
    // An oohd too old to name sessions cannot check one: refused rather
    // than collected unchecked.
    if (session->id == 0)
        return fail(c, ESTALE,
                    "oohd did not name this session (it predates session ids): "
                    "the session cannot be checked; upgrade oohd");
    return collectBegin(c, session->pid, session->start_time, session->id, info);
}

long ooh_collect_next(ooh_client *c, struct ooh_range *buf, size_t cap)
{
    if (!c || !c->collecting)
        return 0;
    if (!buf && cap)
        return fail(c, EINVAL, "no buffer");
    while (c->pending_pos == c->pending.size() && !c->collect_done) {
        auto msg = receive(c);
        if (!msg) {
            c->collecting = false;
            return fail(c, msg.error());
        }
        if (msg->has_error()) {
            c->collecting = false;
            return fail(c, msg->error().errno_code(), msg->error().message());
        }
        if (!msg->has_collect_chunk() || msg->request_id() != c->collect_id) {
            c->collecting = false;
            return fail(c, EPROTO, "unexpected message in the middle of a collect");
        }
        if (int r = takeChunk(c, msg->collect_chunk()); r < 0)
            return r;
    }
    size_t n = 0;
    for (; n < cap && c->pending_pos < c->pending.size(); ++n) {
        const auto &r = c->pending[c->pending_pos++];
        buf[n] = {r.start, r.end, r.wholesale ? OOH_RANGE_WHOLESALE : 0u, 0u};
    }
    if (c->pending_pos == c->pending.size() && c->collect_done)
        c->collecting = n > 0; // one more call returns 0
    if (n == 0)
        c->collecting = false;
    return static_cast<long>(n);
}

int ooh_get_stats(ooh_client *c, pid_t pid, struct ooh_stats *out)
{
    Envelope req, reply;
    req.mutable_stats()->set_pid(pid);
    if (int r = roundTrip(c, req, &reply); r < 0)
        return r;
    if (!reply.has_stats_reply())
        return fail(c, EPROTO, "unexpected reply to stats");
    const auto &s = reply.stats_reply();
    if (out) {
        std::memset(out, 0, sizeof(*out));
        copyString(out->backend, sizeof(out->backend), s.backend());
        out->epoch = s.epoch();
        out->collects = s.collects();
        out->pages_reported = s.pages_reported();
        out->pages_wholesale = s.pages_wholesale();
        out->last_collect_ns = s.last_collect_ns();
        out->last_collect_pages = s.last_collect_pages();
        out->tracked_since_ns = s.tracked_since_ns();
        out->tracked_bytes = s.tracked_bytes();
        out->alive = s.alive();
    }
    return 0;
}

long ooh_backends(ooh_client *c, struct ooh_backend_info *buf, size_t cap)
{
    Envelope req, reply;
    req.mutable_backends();
    if (int r = roundTrip(c, req, &reply); r < 0)
        return r;
    if (!reply.has_backends_reply())
        return fail(c, EPROTO, "unexpected reply to backends");
    const auto &list = reply.backends_reply().backends();
    for (int i = 0; i < list.size() && static_cast<size_t>(i) < cap; ++i) {
        copyString(buf[i].name, sizeof(buf[i].name), list[i].name());
        copyString(buf[i].reason, sizeof(buf[i].reason), list[i].reason());
        buf[i].available = list[i].available();
        buf[i].is_default = list[i].is_default();
    }
    return list.size();
}

} // extern "C"

// SPDX-License-Identifier: Apache-2.0
// oohd against a local user who tries to exhaust it: file descriptors passed
// in excess, connections held open by other uids, clients that never say
// Hello. Every fd a client passes is closed, and root is still served.
#include "server_harness.h"
#include "target.h"
#include "test_support.h"

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

namespace ooh {
namespace {

using test::backendsRequest;
using test::ChildProcess;
using test::hello;
using test::roundTrip;

// What oohd promises root while other uids do their worst (issue 8).
constexpr auto kRootBound = std::chrono::milliseconds(100);

int countFds(pid_t pid)
{
    DIR *dir = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
    if (!dir)
        return -1;
    int n = 0;
    while (struct dirent *de = ::readdir(dir))
        if (de->d_name[0] != '.')
            ++n;
    ::closedir(dir);
    return n;
}

// A client socket connected to `path`; blocking calls give up after
// timeout_ms so that a daemon that stopped accepting fails the test.
UniqueFD connectTo(const std::string &path, int timeout_ms = 5000)
{
    UniqueFD fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) < 0)
        return UniqueFD();
    return fd;
}

// Sends one packet with every fd of `fds` in a single SCM_RIGHTS message.
bool sendWithFds(int sock, const std::string &bytes, const std::vector<int> &fds)
{
    std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
    struct iovec iov = {const_cast<char *>(bytes.data()), bytes.size()};
    struct msghdr mh = {};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (!fds.empty()) {
        mh.msg_control = control.data();
        mh.msg_controllen = control.size();
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
    }
    return ::sendmsg(sock, &mh, MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
}

std::string encoded(const wire::Envelope &msg) { return wire::encode(msg).value(); }

// Reads until oohd closes the connection; true if it did (not a timeout).
bool waitForClose(int sock)
{
    char buf[wire::kMaxMessageBytes + 1];
    for (;;) {
        ssize_t n = ::recv(sock, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return true;
        if (n < 0)
            return false;
    }
}

// Drops to `uid` (and gid) in a forked child; false if the kernel refused.
bool becomeUid(uid_t uid)
{
    return ::setgroups(0, nullptr) == 0 && ::setgid(uid) == 0 && ::setuid(uid) == 0;
}

// What a client hears in answer to its Hello: a reply, or the reason it was
// refused. A refused connection may be closed before the Hello is sent, so
// a failed send still reads what oohd left in the socket.
wire::Envelope greet(int sock)
{
    auto sent = wire::sendMessage(sock, hello());
    (void)sent;
    auto r = wire::receiveMessage(sock);
    return r ? *r : wire::Envelope{};
}

class OohdUnderAttack : public ::testing::Test {
protected:
    void startOohd(const std::vector<std::string> &extra = {})
    {
        std::vector<std::string> args = {"--log-level", "notice"};
        args.insert(args.end(), extra.begin(), extra.end());
        oohd_.start("ooh-exh", args);
        socket_ = oohd_.socket();
        daemon_ = oohd_.pid();
    }

    test::OohdProcess oohd_;
    std::string socket_;
    pid_t daemon_ = -1;
};

// Issue 8: every packet carrying two fds leaked one in oohd. Whatever a
// client attaches, and however much, oohd's fd count comes back.
TEST_F(OohdUnderAttack, PassedFdsAreAllClosed)
{
    ASSERT_NO_FATAL_FAILURE(startOohd());
    auto c = connectTo(socket_);
    ASSERT_TRUE(c.isValid());
    ASSERT_TRUE(roundTrip(c.get(), hello()).has_hello_reply());
    ASSERT_TRUE(roundTrip(c.get(), backendsRequest(2)).has_backends_reply());
    const int baseline = countFds(daemon_);
    ASSERT_GT(baseline, 0);

    UniqueFD null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    ChildProcess target({test::buildDir() + "/ooh-inject-target", "sleep", "100000"});
    std::string ready;
    ASSERT_TRUE(target.readLine(&ready));
    UniqueFD pidfd(static_cast<int>(::syscall(SYS_pidfd_open, target.pid(), 0)));
    ASSERT_TRUE(pidfd.isValid());
    const std::vector<int> two = {null_fd.get(), null_fd.get()};
    // More than fit in oohd's control buffer: the kernel sets MSG_CTRUNC.
    const std::vector<int> many(16, null_fd.get());

    wire::Envelope track_by_pidfd;
    track_by_pidfd.mutable_track()->set_by_pidfd(true);
    struct Case {
        const char *what;
        wire::Envelope msg;
        std::vector<int> fds;
        int times;
    };
    std::vector<Case> cases = {
        {"Backends with two fds", backendsRequest(10), two, 300},
        {"Track by pidfd with two pidfds", track_by_pidfd, {pidfd.get(), pidfd.get()}, 20},
        {"Track by pidfd with two fds that are not pidfds", track_by_pidfd, two, 50},
        {"Backends with 16 fds (truncated control data)", backendsRequest(11), many, 50},
        {"Track by pidfd with 16 fds (truncated control data)", track_by_pidfd, many, 50},
        {"Backends with one fd", backendsRequest(12), {null_fd.get()}, 50},
        {"Track by pidfd with one fd that is not a pidfd", track_by_pidfd, {null_fd.get()}, 50},
    };
    for (auto &k : cases) {
        int tracked = 0;
        for (int i = 0; i < k.times; ++i) {
            k.msg.set_request_id(100 + i);
            ASSERT_TRUE(sendWithFds(c.get(), encoded(k.msg), k.fds)) << k.what;
            auto r = wire::receiveMessage(c.get());
            ASSERT_TRUE(r) << k.what << ": no reply: " << r.error().message;
            tracked += r->has_track_reply();
        }
        EXPECT_EQ(tracked, 0) << k.what << ": tracked with fds in excess";
        EXPECT_EQ(countFds(daemon_), baseline)
            << "oohd kept fds after " << k.times << " x " << k.what;
    }

    // fds sent before the handshake, with a packet oohd cannot decode, and
    // with an empty packet: oohd ends those connections, and closes the fds.
    {
        auto d = connectTo(socket_);
        ASSERT_TRUE(sendWithFds(d.get(), encoded(hello()), two));
        EXPECT_TRUE(wire::receiveMessage(d.get()));
        d.reset();
        auto e = connectTo(socket_);
        ASSERT_TRUE(sendWithFds(e.get(), std::string("\xff\xff\xff\xff", 4), two));
        EXPECT_TRUE(waitForClose(e.get()));
        auto f = connectTo(socket_);
        ASSERT_TRUE(sendWithFds(f.get(), std::string(), two));
        EXPECT_TRUE(waitForClose(f.get()));
    }
    // The closed connections are gone once oohd answered on another one.
    ASSERT_TRUE(roundTrip(c.get(), backendsRequest(3)).has_backends_reply());
    EXPECT_EQ(countFds(daemon_), baseline) << "oohd kept fds of connections it closed";

    // The exact request the issue names: no pidfd is taken from a packet
    // with two, and a well-formed one still works.
    track_by_pidfd.set_request_id(4);
    ASSERT_TRUE(sendWithFds(c.get(), encoded(track_by_pidfd), {pidfd.get(), pidfd.get()}));
    auto r = wire::receiveMessage(c.get());
    ASSERT_TRUE(r && r->has_error());
    EXPECT_NE(r->error().message().find("file descriptor"), std::string::npos)
        << r->error().message();
}

// Issue 8: 1024 idle connections of any uid locked out everyone, root
// included. Other uids together hold more than oohd's limit; root still
// gets an answer within the bound.
TEST_F(OohdUnderAttack, RootIsServedWhileOtherUidsHoldEveryConnection)
{
    ASSERT_NO_FATAL_FAILURE(startOohd());
    constexpr int kUids = 20, kPerUid = 60; // 1200 > 1024, under 64 per uid
    std::vector<pid_t> holders;
    int report[2];
    ASSERT_EQ(::pipe2(report, O_CLOEXEC), 0);
    for (int u = 0; u < kUids; ++u) {
        pid_t child = ::fork();
        if (child == 0) {
            if (!becomeUid(static_cast<uid_t>(60000 + u)))
                ::_exit(3);
            std::vector<UniqueFD> held;
            for (int i = 0; i < kPerUid; ++i) {
                auto s = connectTo(socket_, 2000);
                if (s.isValid())
                    held.push_back(std::move(s));
            }
            char one = 1;
            if (::write(report[1], &one, 1) != 1)
                ::_exit(4);
            for (;;)
                ::pause();
        }
        ASSERT_GT(child, 0);
        holders.push_back(child);
    }
    ::close(report[1]);
    int ready = 0;
    char one;
    while (ready < kUids && ::read(report[0], &one, 1) == 1)
        ++ready;
    ::close(report[0]);
    ASSERT_EQ(ready, kUids) << "a connection holder failed to drop privileges";

    auto t0 = std::chrono::steady_clock::now();
    auto root = connectTo(socket_);
    auto greeting = root.isValid() ? greet(root.get()) : wire::Envelope{};
    auto answer =
        greeting.has_hello_reply() ? roundTrip(root.get(), backendsRequest(2)) : wire::Envelope{};
    auto waited = std::chrono::steady_clock::now() - t0;
    int fds = countFds(daemon_);
    for (pid_t p : holders) {
        ::kill(p, SIGKILL);
        ::waitpid(p, nullptr, 0);
    }
    ASSERT_TRUE(root.isValid()) << "root could not connect";
    ASSERT_TRUE(greeting.has_hello_reply()) << "root was refused: " << greeting.DebugString();
    ASSERT_TRUE(answer.has_backends_reply()) << answer.DebugString();
    auto ms = std::chrono::duration_cast<std::chrono::microseconds>(waited).count() / 1000.0;
    std::printf("root served in %.2f ms while %d uids tried to hold %d connections "
                "(oohd: %d fds)\n",
                ms, kUids, kUids * kPerUid, fds);
    EXPECT_LT(waited, kRootBound) << "root waited " << ms << " ms for its answer while " << kUids
                                  << " other uids held oohd's connections; the bound is "
                                  << kRootBound.count() << " ms";
}

// One uid cannot take more than its share, and a refused client hears why.
TEST_F(OohdUnderAttack, OneUidHoldsAtMostItsShare)
{
    ASSERT_NO_FATAL_FAILURE(startOohd());
    constexpr int kTries = 200;
    constexpr uid_t kUid = 65534;
    int report[2];
    ASSERT_EQ(::pipe2(report, O_CLOEXEC), 0);
    pid_t child = ::fork();
    if (child == 0) {
        if (!becomeUid(kUid))
            ::_exit(3);
        std::vector<UniqueFD> held;
        for (int i = 0; i < kTries; ++i)
            held.push_back(connectTo(socket_, 2000));
        // [served, refused naming the uid, anything else]
        int counts[3] = {0, 0, 0};
        for (auto &s : held) {
            auto r = s.isValid() ? greet(s.get()) : wire::Envelope{};
            if (r.has_hello_reply())
                counts[0]++;
            else if (r.has_error() &&
                     r.error().message().find("uid " + std::to_string(kUid)) != std::string::npos)
                counts[1]++;
            else
                counts[2]++;
        }
        bool ok = ::write(report[1], counts, sizeof(counts)) == sizeof(counts);
        ::_exit(ok ? 0 : 4);
    }
    ASSERT_GT(child, 0);
    ::close(report[1]);
    int counts[3] = {-1, -1, -1};
    ssize_t n = ::read(report[0], counts, sizeof(counts));
    ::close(report[0]);
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_EQ(n, static_cast<ssize_t>(sizeof(counts))) << "child status " << status;
    std::printf("uid %u: %d of %d connections served, %d refused with the reason\n", kUid,
                counts[0], kTries, counts[1]);
    EXPECT_EQ(counts[0], 64) << "connections served for one non-root uid";
    EXPECT_EQ(counts[1], kTries - 64) << "refusals that name the uid";
    EXPECT_EQ(counts[2], 0) << "connections that got neither";

    // Its connections are gone: root is served as before.
    auto root = connectTo(socket_);
    ASSERT_TRUE(root.isValid());
    EXPECT_TRUE(greet(root.get()).has_hello_reply());
}

// One uid tracking its own processes cannot take every session: past its
// share it hears why, and root still tracks.
TEST_F(OohdUnderAttack, OneUidTracksAtMostItsShareOfProcesses)
{
    constexpr int kShare = 2, kTries = 4;
    constexpr uid_t kUid = 65534;
    ASSERT_NO_FATAL_FAILURE(startOohd({"--max-sessions-per-uid", std::to_string(kShare)}));
    int report[2], verdict[2];
    ASSERT_EQ(::pipe2(report, O_CLOEXEC), 0);
    ASSERT_EQ(::pipe2(verdict, O_CLOEXEC), 0);
    pid_t child = ::fork();
    if (child == 0) {
        if (!becomeUid(kUid))
            ::_exit(3);
        // Its own processes, its descendants: the kernel lets it trace them.
        std::vector<pid_t> sleepers;
        for (int i = 0; i < kTries + 1; ++i) {
            pid_t s = ::fork();
            if (s == 0) {
                ::execl("/bin/sleep", "sleep", "60", nullptr);
                ::_exit(127);
            }
            sleepers.push_back(s);
        }
        ::usleep(100000); // let them exec
        auto c = connectTo(socket_);
        // [tracked, refused naming the uid, anything else], then the last
        // sleeper's pid for root to track.
        int counts[4] = {0, 0, 0, sleepers.back()};
        if (c.isValid() && greet(c.get()).has_hello_reply()) {
            for (int i = 0; i < kTries; ++i) {
                wire::Envelope track;
                track.set_request_id(100 + i);
                track.mutable_track()->set_pid(sleepers[i]);
                track.mutable_track()->set_access_proof(true);
                // The proof that it may trace them (access_proof).
                UniqueFD mem(::open(("/proc/" + std::to_string(sleepers[i]) + "/mem").c_str(),
                                    O_RDONLY | O_CLOEXEC));
                wire::Envelope r;
                if (mem.isValid() && sendWithFds(c.get(), encoded(track), {mem.get()}))
                    if (auto got = wire::receiveMessage(c.get()))
                        r = *got;
                if (r.has_track_reply())
                    counts[0]++;
                else if (r.has_error() && r.error().errno_code() == EUSERS &&
                         r.error().message().find("uid " + std::to_string(kUid)) !=
                             std::string::npos)
                    counts[1]++;
                else
                    counts[2]++;
            }
        }
        bool ok = ::write(report[1], counts, sizeof(counts)) == sizeof(counts);
        // Wait for root's verdict before the sleepers go.
        char done;
        ok = ok && ::read(verdict[0], &done, 1) == 1;
        for (pid_t s : sleepers)
            ::kill(s, SIGKILL);
        ::_exit(ok ? 0 : 4);
    }
    ASSERT_GT(child, 0);
    int counts[4] = {-1, -1, -1, -1};
    ssize_t n = ::read(report[0], counts, sizeof(counts));
    ASSERT_EQ(n, static_cast<ssize_t>(sizeof(counts)));
    EXPECT_EQ(counts[0], kShare) << "processes tracked for one non-root uid";
    EXPECT_EQ(counts[1], kTries - kShare) << "refusals (EUSERS) that name the uid";
    EXPECT_EQ(counts[2], 0) << "answers that were neither";

    // Root is not limited by that uid's share.
    auto root = connectTo(socket_);
    ASSERT_TRUE(root.isValid());
    ASSERT_TRUE(greet(root.get()).has_hello_reply());
    wire::Envelope track;
    track.set_request_id(200);
    track.mutable_track()->set_pid(counts[3]);
    auto r = roundTrip(root.get(), track);
    EXPECT_TRUE(r.has_track_reply()) << (r.has_error() ? r.error().message() : "no reply");

    char done = 1;
    EXPECT_EQ(::write(verdict[1], &done, 1), 1);
    for (int fd : {report[0], report[1], verdict[0], verdict[1]})
        ::close(fd);
    int status = 0;
    ::waitpid(child, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
}

// Who may track whom is the kernel's call (access_proof): a non-root client
// gets no further than the kernel lets it ptrace. Each case: a target of
// uid 65534 that the kernel protects from uid 65534 itself, tracked without
// a proof and with the proof of a sibling it may trace.
struct AccessAttempt {
    int without_proof = -1; // errno of the answer, 0 if tracked
    int sibling_proof = -1;
    int mem_open = -1; // errno of opening the target's /proc/PID/mem
};

AccessAttempt tryToTrack(const std::string &socket, pid_t target, pid_t sibling)
{
    AccessAttempt a;
    UniqueFD mem(
        ::open(("/proc/" + std::to_string(target) + "/mem").c_str(), O_RDONLY | O_CLOEXEC));
    a.mem_open = mem.isValid() ? 0 : errno;
    auto c = connectTo(socket);
    if (!c.isValid() || !greet(c.get()).has_hello_reply())
        return a;
    auto answer = [&](const wire::Envelope &req, std::vector<int> fds) {
        if (!sendWithFds(c.get(), encoded(req), fds))
            return -1;
        auto r = wire::receiveMessage(c.get());
        if (!r)
            return -1;
        return r->has_track_reply() ? 0 : r->has_error() ? r->error().errno_code() : -1;
    };
    wire::Envelope track;
    track.set_request_id(300);
    track.mutable_track()->set_pid(target);
    a.without_proof = answer(track, {});
    UniqueFD other(
        ::open(("/proc/" + std::to_string(sibling) + "/mem").c_str(), O_RDONLY | O_CLOEXEC));
    track.set_request_id(301);
    track.mutable_track()->set_access_proof(true);
    a.sibling_proof = other.isValid() ? answer(track, {other.get()}) : -2;
    return a;
}

// tryToTrack() as uid 65534 in a child, with a sleeper of its own as the
// sibling whose /proc/PID/mem it may open.
AccessAttempt attemptAsNobody(const std::string &socket, pid_t target)
{
    int report[2];
    if (::pipe2(report, O_CLOEXEC) < 0)
        return {};
    pid_t child = ::fork();
    if (child == 0) {
        if (!becomeUid(65534))
            ::_exit(3);
        pid_t sibling = ::fork();
        if (sibling == 0) {
            ::execl("/bin/sleep", "sleep", "60", nullptr);
            ::_exit(127);
        }
        ::usleep(50000);
        AccessAttempt a = tryToTrack(socket, target, sibling);
        ::kill(sibling, SIGKILL);
        ::_exit(::write(report[1], &a, sizeof(a)) == sizeof(a) ? 0 : 4);
    }
    ::close(report[1]);
    AccessAttempt a;
    if (::read(report[0], &a, sizeof(a)) != sizeof(a))
        a = {};
    ::close(report[0]);
    ::waitpid(child, nullptr, 0);
    return a;
}

// A process of uid 65534 started by root: `prepare` runs in it after the
// uid change and before it sleeps.
pid_t startNobodyTarget(void (*prepare)())
{
    pid_t pid = ::fork();
    if (pid == 0) {
        ::prctl(PR_SET_KEEPCAPS, 1);
        if (!becomeUid(65534))
            ::_exit(3);
        prepare();
        for (;;)
            ::pause();
    }
    ::usleep(50000);
    return pid;
}

TEST_F(OohdUnderAttack, NonDumpableProcessOfTheSameUidIsRefused)
{
    ASSERT_NO_FATAL_FAILURE(startOohd());
    pid_t target = startNobodyTarget([] { ::prctl(PR_SET_DUMPABLE, 0); });
    ASSERT_GT(target, 0);
    AccessAttempt a = attemptAsNobody(socket_, target);
    ::kill(target, SIGKILL);
    ::waitpid(target, nullptr, 0);
    EXPECT_NE(a.mem_open, 0) << "the kernel let uid 65534 open a non-dumpable process's mem";
    EXPECT_EQ(a.without_proof, EPERM) << "tracked without a proof";
    EXPECT_EQ(a.sibling_proof, EPERM) << "tracked with another process's /proc/PID/mem";
}

TEST_F(OohdUnderAttack, ProcessHoldingCapabilitiesTheClientLacksIsRefused)
{
    ASSERT_NO_FATAL_FAILURE(startOohd());
    // uid 65534, but with CAP_SYS_ADMIN kept (permitted, effective).
    pid_t target = startNobodyTarget([] {
        struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct data[2] = {};
        data[0].permitted = data[0].effective = 1u << CAP_SYS_ADMIN;
        if (::syscall(SYS_capset, &hdr, data) < 0)
            ::_exit(5);
    });
    ASSERT_GT(target, 0);
    std::string caps;
    {
        std::ifstream st("/proc/" + std::to_string(target) + "/status");
        std::string line;
        while (std::getline(st, line))
            if (line.rfind("CapEff:", 0) == 0)
                caps = line;
    }
    AccessAttempt a = attemptAsNobody(socket_, target);
    ::kill(target, SIGKILL);
    ::waitpid(target, nullptr, 0);
    ASSERT_NE(caps.find("0000000000200000"), std::string::npos)
        << "target lacks CAP_SYS_ADMIN: " << caps;
    EXPECT_NE(a.mem_open, 0) << "the kernel let uid 65534 open the mem of a process with more caps";
    EXPECT_EQ(a.without_proof, EPERM) << "tracked without a proof";
    EXPECT_EQ(a.sibling_proof, EPERM) << "tracked with another process's /proc/PID/mem";
}

// A client that never says Hello is dropped after --handshake-timeout; one
// that did is kept however long it idles.
TEST_F(OohdUnderAttack, SilentClientIsDroppedAfterTheHandshakeTimeout)
{
    constexpr int kTimeoutMs = 200;
    ASSERT_NO_FATAL_FAILURE(startOohd({"--handshake-timeout", std::to_string(kTimeoutMs)}));
    auto greeted = connectTo(socket_);
    ASSERT_TRUE(greeted.isValid());
    ASSERT_TRUE(roundTrip(greeted.get(), hello()).has_hello_reply());
    const int baseline = countFds(daemon_);

    auto silent = connectTo(socket_, 10 * kTimeoutMs + 5000);
    ASSERT_TRUE(silent.isValid());
    auto why = wire::receiveMessage(silent.get());
    ASSERT_TRUE(why) << "oohd kept a silent client: " << why.error().message;
    ASSERT_TRUE(why->has_error()) << why->DebugString();
    EXPECT_NE(why->error().message().find("Hello"), std::string::npos) << why->error().message();
    EXPECT_TRUE(waitForClose(silent.get())) << "oohd did not close the silent client";

    ::usleep(2 * kTimeoutMs * 1000);
    EXPECT_TRUE(roundTrip(greeted.get(), backendsRequest(2)).has_backends_reply())
        << "a greeted client was dropped";
    EXPECT_EQ(countFds(daemon_), baseline);
}

// Issue 8: with its fds used up, oohd blamed the target ("process N exited
// while being opened"). The error names the real cause.
TEST(OpenTarget, RunningOutOfFdsIsNotReportedAsExit)
{
    ChildProcess target({test::buildDir() + "/ooh-inject-target", "sleep", "100000"});
    std::string ready;
    ASSERT_TRUE(target.readLine(&ready));
    UniqueFD pidfd(static_cast<int>(::syscall(SYS_pidfd_open, target.pid(), 0)));
    ASSERT_TRUE(pidfd.isValid());
    int lowest_free = ::dup(0);
    ASSERT_GE(lowest_free, 0);
    ::close(lowest_free);
    struct rlimit saved;
    ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
    // One fd free: the pidfd takes it and reading /proc/PID/stat again fails
    // (the path). None free: the first open fails.
    struct rlimit one = {static_cast<rlim_t>(lowest_free + 1), saved.rlim_max};
    struct rlimit none = {static_cast<rlim_t>(lowest_free), saved.rlim_max};
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &one), 0);
    auto opened_last = Target::open(target.pid());
    ::setrlimit(RLIMIT_NOFILE, &none);
    auto opened_none = Target::open(target.pid());
    auto adopted = Target::fromPidfd(std::move(pidfd));
    ::setrlimit(RLIMIT_NOFILE, &saved);

    for (auto *r : {&opened_last, &opened_none, &adopted}) {
        ASSERT_FALSE(*r) << "a target was opened with no fd free";
        EXPECT_EQ(r->error().code, EMFILE) << r->error().message;
        EXPECT_NE(r->error().message.find("out of file descriptors"), std::string::npos)
            << r->error().message;
        EXPECT_EQ(r->error().message.find("exited"), std::string::npos) << r->error().message;
    }
}

} // namespace
} // namespace ooh

int main(int argc, char **argv)
{
    return ooh::test::runRootTests(argc, argv, "the exhaustion tests");
}

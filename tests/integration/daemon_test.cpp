// SPDX-License-Identifier: Apache-2.0
// oohd sessions with real processes: a target that exits is noticed, a
// reused PID is never mistaken for the old process, another uid cannot use
// a session, tracking twice keeps the session, a large set is chunked, and
// a target that cannot stop holds up no other client.
#include "inject_target.h"
#include "server_harness.h"
#include "test_support.h"

#include <chrono>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace ooh {
namespace {

using test::ChildProcess;
using test::hello;
using test::roundTrip;
using test::ServerHarness;

const PeerCredentials kRoot{::getpid(), 0, 0};
const PeerCredentials kStranger{::getpid(), 4242, 4242};

std::string targetPath() { return test::buildDir() + "/ooh-inject-target"; }

wire::Envelope request(uint64_t id, int32_t pid, char kind, uint64_t start_time = 0)
{
    wire::Envelope e;
    e.set_request_id(id);
    switch (kind) {
    case 't': e.mutable_track()->set_pid(pid); break;
    case 'c':
        e.mutable_collect()->set_pid(pid);
        e.mutable_collect()->set_start_time(start_time);
        break;
    case 'u': e.mutable_untrack()->set_pid(pid); break;
    default: e.mutable_stats()->set_pid(pid);
    }
    return e;
}

// Reads a whole collect reply; returns the number of chunks (0 on error).
int readCollect(int fd, const wire::Envelope &first, uint64_t *pages)
{
    if (!first.has_collect_chunk())
        return 0;
    int chunks = 1;
    *pages = first.collect_chunk().total_pages();
    bool last = first.collect_chunk().last();
    while (!last) {
        auto m = wire::receiveMessage(fd);
        if (!m || !m->has_collect_chunk())
            return 0;
        last = m->collect_chunk().last();
        ++chunks;
    }
    return chunks;
}

class DaemonTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        for (auto &b : makeBackends())
            if (b->probe().available)
                return;
        GTEST_SKIP() << "no tracking backend available here";
    }
};

TEST_F(DaemonTest, ExitedTargetAndPidReuse)
{
    ServerHarness h(makeBackends());
    auto c = h.connect(kRoot);
    h.start();
    ASSERT_TRUE(roundTrip(c.get(), hello()).has_hello_reply());
    auto target =
        std::make_unique<ChildProcess>(std::vector<std::string>{targetPath(), "sleep", "100000"});
    std::string ready;
    ASSERT_TRUE(target->readLine(&ready));
    pid_t pid = target->pid();

    auto r = roundTrip(c.get(), request(2, pid, 't'));
    ASSERT_TRUE(r.has_track_reply()) << r.DebugString();
    uint64_t start_time = r.track_reply().start_time();
    EXPECT_FALSE(r.track_reply().already_tracked());

    // Tracking again keeps the session (and its epoch).
    r = roundTrip(c.get(), request(3, pid, 't'));
    ASSERT_TRUE(r.has_track_reply());
    EXPECT_TRUE(r.track_reply().already_tracked());

    uint64_t pages = 0;
    r = roundTrip(c.get(), request(4, pid, 'c', start_time));
    EXPECT_GE(readCollect(c.get(), r, &pages), 1) << r.DebugString();

    // A wrong identity is refused even while the process lives.
    r = roundTrip(c.get(), request(5, pid, 'c', start_time + 1));
    ASSERT_TRUE(r.has_error());
    EXPECT_EQ(r.error().errno_code(), ESRCH);

    target.reset(); // SIGKILL + reap
    ::usleep(50000);
    r = roundTrip(c.get(), request(6, pid, 'c', start_time));
    ASSERT_TRUE(r.has_error()) << r.DebugString();
    EXPECT_EQ(r.error().errno_code(), ESRCH);
    EXPECT_NE(r.error().message().find("exited"), std::string::npos);
    // The session is gone now: "not tracked" from here on.
    r = roundTrip(c.get(), request(7, pid, 'c'));
    ASSERT_TRUE(r.has_error());
    EXPECT_EQ(r.error().errno_code(), ENOENT);
}

TEST_F(DaemonTest, AnotherUidCannotUseTheSession)
{
    ServerHarness h(makeBackends());
    auto root = h.connect(kRoot);
    auto stranger = h.connect(kStranger);
    h.start();
    ASSERT_TRUE(roundTrip(root.get(), hello()).has_hello_reply());
    ASSERT_TRUE(roundTrip(stranger.get(), hello()).has_hello_reply());
    ChildProcess target({targetPath(), "sleep", "100000"});
    std::string ready;
    ASSERT_TRUE(target.readLine(&ready));
    ASSERT_TRUE(roundTrip(root.get(), request(2, target.pid(), 't')).has_track_reply());
    for (char kind : {'c', 'u', 's'}) {
        auto r = roundTrip(stranger.get(), request(3, target.pid(), kind));
        ASSERT_TRUE(r.has_error()) << kind;
        EXPECT_EQ(r.error().errno_code(), EPERM) << kind;
    }
    auto r = roundTrip(root.get(), request(4, target.pid(), 's'));
    ASSERT_TRUE(r.has_stats_reply());
    EXPECT_TRUE(r.stats_reply().alive());
    EXPECT_TRUE(roundTrip(root.get(), request(5, target.pid(), 'u')).has_untrack_reply());
}

// The track reply names the session; the name survives a second track,
// not an untrack, and a collect for another session is refused.
TEST_F(DaemonTest, SessionIdNamesOneSession)
{
    ServerHarness h(makeBackends());
    auto c = h.connect(kRoot);
    h.start();
    ASSERT_TRUE(roundTrip(c.get(), hello()).has_hello_reply());
    ChildProcess target({targetPath(), "sleep", "100000"});
    std::string ready;
    ASSERT_TRUE(target.readLine(&ready));
    const pid_t pid = target.pid();

    auto r = roundTrip(c.get(), request(2, pid, 't'));
    ASSERT_TRUE(r.has_track_reply()) << r.DebugString();
    const uint64_t first = r.track_reply().session_id();
    EXPECT_NE(first, 0u);
    r = roundTrip(c.get(), request(3, pid, 't'));
    ASSERT_TRUE(r.has_track_reply());
    EXPECT_EQ(r.track_reply().session_id(), first);
    r = roundTrip(c.get(), request(4, pid, 's'));
    ASSERT_TRUE(r.has_stats_reply());
    EXPECT_EQ(r.stats_reply().session_id(), first);

    ASSERT_TRUE(roundTrip(c.get(), request(5, pid, 'u')).has_untrack_reply());
    r = roundTrip(c.get(), request(6, pid, 't'));
    ASSERT_TRUE(r.has_track_reply());
    const uint64_t second = r.track_reply().session_id();
    EXPECT_NE(second, 0u);
    EXPECT_NE(second, first);

    wire::Envelope stale = request(7, pid, 'c');
    stale.mutable_collect()->set_session_id(first);
    r = roundTrip(c.get(), stale);
    ASSERT_TRUE(r.has_error()) << r.DebugString();
    EXPECT_EQ(r.error().errno_code(), ESTALE) << r.error().message();
    // Refused before the get-and-reset: the current session's epoch is
    // still the first.
    wire::Envelope current = request(8, pid, 'c');
    current.mutable_collect()->set_session_id(second);
    r = roundTrip(c.get(), current);
    ASSERT_TRUE(r.has_collect_chunk()) << r.DebugString();
    EXPECT_EQ(r.collect_chunk().epoch(), 1u);
    uint64_t pages = 0;
    EXPECT_GE(readCollect(c.get(), r, &pages), 1);
}

// A real target writes one page in two of a region: thousands of ranges
// that cannot merge, so the reply must come in several chunks, and the set
// must be exactly those pages, each once.
TEST_F(DaemonTest, LargeSetIsChunked)
{
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    const size_t written = 2 * wire::kMaxRangesPerChunk + 100;
    int go[2], back[2];
    ASSERT_EQ(::pipe(go), 0);
    ASSERT_EQ(::pipe(back), 0);
    // Forked before the server has any thread.
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        ::close(go[1]);
        ::close(back[0]);
        auto *region =
            static_cast<volatile char *>(::mmap(nullptr, 2 * written * page, PROT_READ | PROT_WRITE,
                                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        char c = 0;
        if (region == MAP_FAILED || ::write(back[1], &c, 1) != 1 || ::read(go[0], &c, 1) != 1)
            ::_exit(1);
        for (size_t i = 0; i < written; ++i)
            region[2 * i * page] = 1;
        uint64_t base = reinterpret_cast<uintptr_t>(region);
        if (::write(back[1], &base, sizeof(base)) != sizeof(base))
            ::_exit(1);
        ::read(go[0], &c, 1); // until the test closes it
        ::_exit(0);
    }
    ::close(go[0]);
    ::close(back[1]);
    char c;
    ASSERT_EQ(::read(back[0], &c, 1), 1);

    ServerHarness h(makeBackends());
    auto conn = h.connect(kRoot);
    h.start();
    ASSERT_TRUE(roundTrip(conn.get(), hello()).has_hello_reply());
    ASSERT_TRUE(roundTrip(conn.get(), request(2, child, 't')).has_track_reply());
    ASSERT_EQ(::write(go[1], &c, 1), 1);
    uint64_t base = 0;
    ASSERT_EQ(::read(back[0], &base, sizeof(base)), static_cast<ssize_t>(sizeof(base)));

    auto r = roundTrip(conn.get(), request(3, child, 'c'));
    ASSERT_TRUE(r.has_collect_chunk()) << r.DebugString();
    const uint64_t total = r.collect_chunk().total_ranges();
    std::vector<PageRange> ranges;
    size_t chunks = 0;
    for (;;) {
        ASSERT_TRUE(r.has_collect_chunk()) << r.DebugString();
        ASSERT_EQ(r.collect_chunk().total_ranges(), total);
        ASSERT_TRUE(wire::decodeRanges(r.collect_chunk(), ranges));
        ++chunks;
        if (r.collect_chunk().last())
            break;
        auto next = wire::receiveMessage(conn.get());
        ASSERT_TRUE(next) << next.error().message;
        r = *next;
    }
    ::close(go[1]);
    ::waitpid(child, nullptr, 0);
    EXPECT_EQ(ranges.size(), total);
    EXPECT_GT(chunks, 1u);
    EXPECT_EQ(chunks, (total + wire::kMaxRangesPerChunk - 1) / wire::kMaxRangesPerChunk);
    // Inside the region: exactly the pages written.
    std::vector<PageRange> inside;
    for (const auto &x : ranges)
        if (x.end > base && x.start < base + 2 * written * page)
            inside.push_back(x);
    ASSERT_EQ(inside.size(), written);
    for (size_t i = 0; i < written; ++i) {
        EXPECT_EQ(inside[i].start, base + 2 * i * page) << "range " << i;
        EXPECT_EQ(inside[i].end, base + (2 * i + 1) * page) << "range " << i;
    }
}

// The hostile case: a client asks to track a process that cannot stop (a
// vfork() parent waiting for its child). Its answer takes the injection's
// 2 s deadline; meanwhile every other client is served at once.
TEST_F(DaemonTest, UnstoppableTargetHoldsUpNoOtherClient)
{
    using Clock = std::chrono::steady_clock;
    ChildProcess plain({targetPath(), "sleep", "100000"});
    ChildProcess stuck({targetPath(), "vfork", "3000"});
    std::string ready;
    ASSERT_TRUE(plain.readLine(&ready));
    ASSERT_TRUE(stuck.readLine(&ready));
    std::this_thread::sleep_for(std::chrono::milliseconds(100)); // in vfork() now

    ServerHarness h(makeBackends());
    auto a = h.connect(kRoot);
    auto b = h.connect(kRoot);
    h.start();
    ASSERT_TRUE(roundTrip(a.get(), hello()).has_hello_reply());
    ASSERT_TRUE(roundTrip(b.get(), hello()).has_hello_reply());

    const auto asked = Clock::now();
    ASSERT_TRUE(wire::sendMessage(a.get(), request(2, stuck.pid(), 't')));
    std::this_thread::sleep_for(std::chrono::milliseconds(100)); // its worker waits now

    auto t0 = Clock::now();
    auto r = roundTrip(b.get(), test::backendsRequest(3));
    EXPECT_TRUE(r.has_backends_reply()) << r.DebugString();
    auto backends_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
    t0 = Clock::now();
    r = roundTrip(b.get(), request(4, plain.pid(), 't'));
    EXPECT_TRUE(r.has_track_reply()) << r.DebugString();
    auto track_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
    t0 = Clock::now();
    uint64_t pages = 0;
    r = roundTrip(b.get(), request(5, plain.pid(), 'c'));
    EXPECT_GE(readCollect(b.get(), r, &pages), 1) << r.DebugString();
    auto collect_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
    EXPECT_LT(backends_ms.count(), 100);
    EXPECT_LT(track_ms.count(), 100);
    EXPECT_LT(collect_ms.count(), 100);
    std::fprintf(stderr,
                 "while a track waited for a vfork() parent: backends %lld ms, track "
                 "%lld ms, collect %lld ms\n",
                 static_cast<long long>(backends_ms.count()),
                 static_cast<long long>(track_ms.count()),
                 static_cast<long long>(collect_ms.count()));

    // The stuck track is refused after the deadline, with the reason.
    auto refused = wire::receiveMessage(a.get());
    ASSERT_TRUE(refused) << refused.error().message;
    r = *refused;
    ASSERT_TRUE(r.has_error()) << r.DebugString();
    EXPECT_EQ(r.request_id(), 2u);
    EXPECT_EQ(r.error().errno_code(), ETIMEDOUT) << r.error().message();
    EXPECT_NE(r.error().message().find("vfork"), std::string::npos) << r.error().message();
    EXPECT_GE(Clock::now() - asked, std::chrono::milliseconds(1500));
    EXPECT_LT(Clock::now() - asked, std::chrono::seconds(5));
    // And the target was let go untouched: it finishes its work.
    std::string line;
    unsigned long long result = 0;
    while (stuck.readLine(&line) && std::sscanf(line.c_str(), "result %llu", &result) != 1) {
    }
    EXPECT_EQ(result, testprog::spinResult(1, 1000));
}

} // namespace
} // namespace ooh

int main(int argc, char **argv)
{
    return ooh::test::runRootTests(argc, argv, "the daemon session tests");
}

// SPDX-License-Identifier: Apache-2.0
// oohd sessions with real processes: a target that exits is noticed, a
// reused PID is never mistaken for the old process, another uid cannot use
// a session, tracking twice keeps the session.
#include "server_harness.h"
#include "test_support.h"

#include <gtest/gtest.h>
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
    case 't':
        e.mutable_track()->set_pid(pid);
        break;
    case 'c':
        e.mutable_collect()->set_pid(pid);
        e.mutable_collect()->set_start_time(start_time);
        break;
    case 'u':
        e.mutable_untrack()->set_pid(pid);
        break;
    default:
        e.mutable_stats()->set_pid(pid);
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
    auto target = std::make_unique<ChildProcess>(
        std::vector<std::string>{targetPath(), "sleep", "100000"});
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

    target.reset();  // SIGKILL + reap
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

TEST_F(DaemonTest, LargeSetIsChunked)
{
    // A target with many scattered dirty pages gives a multi-chunk reply.
    ServerHarness h(makeBackends());
    auto c = h.connect(kRoot);
    h.start();
    ASSERT_TRUE(roundTrip(c.get(), hello()).has_hello_reply());
    ChildProcess writer({test::buildDir() + "/ooh-dirty-writer"});
    std::string ready;
    ASSERT_TRUE(writer.readLine(&ready));
    ASSERT_TRUE(roundTrip(c.get(), request(2, writer.pid(), 't')).has_track_reply());
    uint64_t total = 0;
    test::GroundTruth truth;
    for (int i = 0; i < 60; ++i)
        ASSERT_TRUE(test::runWriterRound(writer, 77 + i, &truth));
    uint64_t pages = 0;
    auto r = roundTrip(c.get(), request(3, writer.pid(), 'c'));
    int chunks = readCollect(c.get(), r, &pages);
    ASSERT_GE(chunks, 1);
    total += pages;
    EXPECT_GT(total, 0u);
    writer.send("exit");
}

} // namespace
} // namespace ooh

int main(int argc, char **argv)
{
    return ooh::test::runRootTests(argc, argv, "the daemon session tests");
}

// SPDX-License-Identifier: Apache-2.0
// Sessions and the collect path through the protocol, with FakeBackend
// (no root, no kernel feature): normalisation and chunking of a collect's
// set, stats, lost sessions, quotas, probing again, and backend work off
// the event loop (a blocked target holds up no other client; requests for
// a busy pid wait in order; a session ending while its work runs).
#include "fake_backend.h"
#include "server_harness.h"
#include "test_support.h"

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <ostream>
#include <poll.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace ooh {

// Failure messages show ranges as addresses, not bytes.
void PrintTo(const PageRange &r, std::ostream *os)
{
    *os << std::hex << "[0x" << r.start << ", 0x" << r.end << std::dec << ")"
        << (r.wholesale ? " wholesale" : "");
}

namespace {

using test::ChildProcess;
using test::FakeScript;
using test::FakeStep;
using test::hello;
using test::Latch;
using test::roundTrip;
using test::ServerHarness;
using Clock = std::chrono::steady_clock;

const PeerCredentials kRoot{::getpid(), 0, 0};
const uint64_t kPage = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));

wire::Envelope trackRequest(uint64_t id, pid_t pid, const std::string &backend = "")
{
    wire::Envelope e;
    e.set_request_id(id);
    e.mutable_track()->set_pid(pid);
    e.mutable_track()->set_backend(backend);
    return e;
}

wire::Envelope collectRequest(uint64_t id, pid_t pid)
{
    wire::Envelope e;
    e.set_request_id(id);
    e.mutable_collect()->set_pid(pid);
    return e;
}

wire::Envelope statsRequest(uint64_t id, pid_t pid)
{
    wire::Envelope e;
    e.set_request_id(id);
    e.mutable_stats()->set_pid(pid);
    return e;
}

wire::Envelope untrackRequest(uint64_t id, pid_t pid)
{
    wire::Envelope e;
    e.set_request_id(id);
    e.mutable_untrack()->set_pid(pid);
    return e;
}

wire::Envelope receive(int fd)
{
    auto r = wire::receiveMessage(fd);
    return r ? *r : wire::Envelope{};
}

// Whether a message waits on fd within `ms`.
bool readable(int fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    return ::poll(&p, 1, ms) == 1;
}

// A Track from a client other than root, with its /proc/PID/mem proof.
wire::Envelope trackWithProof(int fd, uint64_t id, pid_t pid)
{
    std::string path = "/proc/" + std::to_string(pid) + "/mem";
    UniqueFD proof(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_TRUE(proof.isValid()) << path;
    wire::Envelope e = trackRequest(id, pid);
    e.mutable_track()->set_access_proof(true);
    if (!wire::sendMessage(fd, e, proof.get()))
        return {};
    return receive(fd);
}

struct Collected {
    std::vector<wire::Envelope> chunks;
    std::vector<PageRange> ranges; // decoded, in order
};

// The rest of a collect reply whose first message is `first`.
Collected readCollect(int fd, wire::Envelope first)
{
    Collected c;
    wire::Envelope m = std::move(first);
    for (;;) {
        if (!m.has_collect_chunk()) {
            ADD_FAILURE() << "not a collect chunk: " << m.DebugString();
            return c;
        }
        EXPECT_TRUE(wire::decodeRanges(m.collect_chunk(), c.ranges));
        c.chunks.push_back(m);
        if (m.collect_chunk().last())
            return c;
        m = receive(fd);
    }
}

Collected collect(int fd, uint64_t id, pid_t pid)
{
    return readCollect(fd, roundTrip(fd, collectRequest(id, pid)));
}

// A process to track: the fake never touches it, oohd only opens it.
std::unique_ptr<ChildProcess> sleeper()
{
    return std::make_unique<ChildProcess>(std::vector<std::string>{"/bin/sleep", "1000"});
}

class Sessions : public ::testing::Test {
protected:
    std::shared_ptr<FakeScript> script_ = std::make_shared<FakeScript>();
};

TEST_F(Sessions, CollectIsNormalised)
{
    auto target = sleeper();
    const pid_t pid = target->pid();
    ServerHarness h(test::fakeBackends(script_));
    auto c = h.connect(kRoot);
    h.start();
    ASSERT_TRUE(roundTrip(c.get(), hello()).has_hello_reply());
    ASSERT_TRUE(roundTrip(c.get(), trackRequest(2, pid)).has_track_reply());

    const uint64_t P = kPage;
    script_->addCollect(pid, {{{5 * P, 6 * P, false},
                               {1 * P, 3 * P, false},
                               {2 * P, 4 * P, false},
                               {4 * P, 5 * P, false},
                               {20 * P, 20 * P, false},
                               {10 * P, 12 * P, true},
                               {11 * P, 13 * P, false}},
                              {},
                              {}});
    Collected got = collect(c.get(), 3, pid);
    ASSERT_EQ(got.chunks.size(), 1u);
    const std::vector<PageRange> want = {
        {1 * P, 6 * P, false}, {10 * P, 12 * P, true}, {12 * P, 13 * P, false}};
    EXPECT_EQ(got.ranges, want);
    const auto &chunk = got.chunks[0].collect_chunk();
    EXPECT_EQ(chunk.total_ranges(), 3u);
    EXPECT_EQ(chunk.total_pages(), 8u);
    EXPECT_EQ(chunk.epoch(), 1u);
    EXPECT_EQ(chunk.page_size(), P);
}

// A checkpointer skips the presence of unreported pages only on this word.
TEST_F(Sessions, CollectSaysWhetherDiscardsAreInTheSet)
{
    auto target = sleeper();
    const pid_t pid = target->pid();
    ServerHarness h(test::fakeBackends(script_));
    auto c = h.connect(kRoot);
    h.start();
    ASSERT_TRUE(roundTrip(c.get(), hello()).has_hello_reply());
    ASSERT_TRUE(roundTrip(c.get(), trackRequest(2, pid)).has_track_reply());

    Collected with = collect(c.get(), 3, pid);
    ASSERT_EQ(with.chunks.size(), 1u);
    EXPECT_TRUE(with.chunks[0].collect_chunk().all_changes());
    {
        std::lock_guard lock(script_->mutex);
        script_->reports_discards = false;
    }
    Collected without = collect(c.get(), 4, pid);
    ASSERT_EQ(without.chunks.size(), 1u);
    EXPECT_FALSE(without.chunks[0].collect_chunk().all_changes());
}

TEST_F(Sessions, LargeSetIsChunkedExactly)
{
    auto target = sleeper();
    const pid_t pid = target->pid();
    ServerHarness h(test::fakeBackends(script_));
    auto c = h.connect(kRoot);
    h.start();
    ASSERT_TRUE(roundTrip(c.get(), hello()).has_hello_reply());
    ASSERT_TRUE(roundTrip(c.get(), trackRequest(2, pid)).has_track_reply());

    // One page in two written: nothing merges. Handed over backwards.
    const size_t n = 2 * wire::kMaxRangesPerChunk + 17;
    std::vector<PageRange> want;
    for (size_t i = 0; i < n; ++i)
        want.push_back({(2 * i + 16) * kPage, (2 * i + 17) * kPage, i % 100 == 0});
    script_->addCollect(pid, {std::vector<PageRange>(want.rbegin(), want.rend()), {}, {}});

    Collected got = collect(c.get(), 3, pid);
    const size_t chunks = (n + wire::kMaxRangesPerChunk - 1) / wire::kMaxRangesPerChunk;
    ASSERT_GT(chunks, 1u);
    ASSERT_EQ(got.chunks.size(), chunks);
    EXPECT_EQ(got.ranges.size(), n);
    EXPECT_EQ(got.ranges, want);
    size_t seen = 0;
    for (size_t i = 0; i < got.chunks.size(); ++i) {
        const auto &chunk = got.chunks[i].collect_chunk();
        EXPECT_EQ(got.chunks[i].request_id(), 3u);
        EXPECT_EQ(chunk.total_ranges(), n) << "chunk " << i;
        EXPECT_EQ(chunk.total_pages(), n) << "chunk " << i;
        EXPECT_EQ(chunk.epoch(), 1u);
        EXPECT_EQ(chunk.last(), i + 1 == got.chunks.size()) << "chunk " << i;
        seen += chunk.page_runs_size() / 2;
    }
    EXPECT_EQ(seen, n);
    // The connection still serves after the long reply.
    EXPECT_TRUE(roundTrip(c.get(), statsRequest(4, pid)).has_stats_reply());
}

TEST_F(Sessions, StatsCountCollects)
{
    auto target = sleeper();
    const pid_t pid = target->pid();
    ServerHarness h(test::fakeBackends(script_));
    auto c = h.connect(kRoot);
    h.start();
    ASSERT_TRUE(roundTrip(c.get(), hello()).has_hello_reply());
    auto t = roundTrip(c.get(), trackRequest(2, pid));
    ASSERT_TRUE(t.has_track_reply());
    EXPECT_EQ(t.track_reply().backend(), "fake");

    script_->addCollect(pid, {{{kPage, 4 * kPage, false}}, {}, {}});
    script_->addCollect(pid, {{{kPage, 2 * kPage, false}, {8 * kPage, 10 * kPage, true}}, {}, {}});
    EXPECT_EQ(collect(c.get(), 3, pid).ranges.size(), 1u);
    EXPECT_EQ(collect(c.get(), 4, pid).ranges.size(), 2u);

    auto r = roundTrip(c.get(), statsRequest(5, pid));
    ASSERT_TRUE(r.has_stats_reply()) << r.DebugString();
    const auto &s = r.stats_reply();
    EXPECT_EQ(s.pid(), pid);
    EXPECT_EQ(s.backend(), "fake");
    EXPECT_EQ(s.session_id(), t.track_reply().session_id());
    EXPECT_EQ(s.epoch(), 3u);
    EXPECT_EQ(s.collects(), 2u);
    EXPECT_EQ(s.pages_reported(), 6u);
    EXPECT_EQ(s.pages_wholesale(), 2u);
    EXPECT_EQ(s.last_collect_pages(), 3u);
    EXPECT_EQ(s.tracked_bytes(), 4096u);
    EXPECT_TRUE(s.alive());
}

TEST_F(Sessions, FailedCollectLosesTheSession)
{
    auto target = sleeper();
    const pid_t pid = target->pid();
    ServerHarness h(test::fakeBackends(script_));
    auto c = h.connect(kRoot);
    h.start();
    ASSERT_TRUE(roundTrip(c.get(), hello()).has_hello_reply());
    ASSERT_TRUE(roundTrip(c.get(), trackRequest(2, pid)).has_track_reply());

    script_->addCollect(pid, {{}, makeError(EOVERFLOW, "the ring overflowed"), {}});
    auto r = roundTrip(c.get(), collectRequest(3, pid));
    ASSERT_TRUE(r.has_error()) << r.DebugString();
    EXPECT_EQ(r.error().errno_code(), EIO);
    EXPECT_NE(r.error().message().find("the ring overflowed"), std::string::npos);
    // Lost stays lost, and says why, until the client tracks again.
    r = roundTrip(c.get(), collectRequest(4, pid));
    ASSERT_TRUE(r.has_error());
    EXPECT_EQ(r.error().errno_code(), EIO);
    EXPECT_NE(r.error().message().find("untrack and track it again"), std::string::npos);
    EXPECT_EQ(script_->liveTrackers(), 0);
    auto t = roundTrip(c.get(), trackRequest(5, pid));
    ASSERT_TRUE(t.has_track_reply()) << t.DebugString();
    EXPECT_FALSE(t.track_reply().already_tracked());
    EXPECT_EQ(collect(c.get(), 6, pid).chunks.size(), 1u);
}

TEST_F(Sessions, TrackerEventErrorLosesTheSession)
{
    script_->with_events = true;
    auto target = sleeper();
    const pid_t pid = target->pid();
    ServerHarness h(test::fakeBackends(script_));
    auto c = h.connect(kRoot);
    h.start();
    ASSERT_TRUE(roundTrip(c.get(), hello()).has_hello_reply());
    ASSERT_TRUE(roundTrip(c.get(), trackRequest(2, pid)).has_track_reply());
    ASSERT_TRUE(script_->fireEvent(pid, makeError(EIO, "events lost")));
    for (int i = 0; i < 500 && script_->liveTrackers() > 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    EXPECT_EQ(script_->liveTrackers(), 0);
    auto r = roundTrip(c.get(), collectRequest(3, pid));
    ASSERT_TRUE(r.has_error()) << r.DebugString();
    EXPECT_EQ(r.error().errno_code(), EIO);
    EXPECT_NE(r.error().message().find("events lost"), std::string::npos);
}

TEST_F(Sessions, QuotasPerUidAndRootReserve)
{
    std::vector<std::unique_ptr<ChildProcess>> targets;
    for (int i = 0; i < 5; ++i)
        targets.push_back(sleeper());
    ServerLimits limits;
    limits.max_sessions = 3;
    limits.session_root_reserve = 1;
    limits.max_sessions_per_uid = 1;
    ServerHarness h(test::fakeBackends(script_), limits);
    auto a = h.connect({::getpid(), 1000, 1000});
    auto b = h.connect({::getpid(), 1001, 1001});
    auto d = h.connect({::getpid(), 1002, 1002});
    auto root = h.connect(kRoot);
    h.start();
    for (int fd : {a.get(), b.get(), d.get(), root.get()})
        ASSERT_TRUE(roundTrip(fd, hello()).has_hello_reply());

    EXPECT_TRUE(trackWithProof(a.get(), 2, targets[0]->pid()).has_track_reply());
    auto r = trackWithProof(a.get(), 3, targets[1]->pid());
    ASSERT_TRUE(r.has_error()) << r.DebugString();
    EXPECT_EQ(r.error().errno_code(), EUSERS) << r.error().message();
    EXPECT_TRUE(trackWithProof(b.get(), 4, targets[1]->pid()).has_track_reply());
    // Two of three are taken; the last is root's.
    r = trackWithProof(d.get(), 5, targets[2]->pid());
    ASSERT_TRUE(r.has_error()) << r.DebugString();
    EXPECT_EQ(r.error().errno_code(), ENOSPC);
    EXPECT_NE(r.error().message().find("kept for root"), std::string::npos);
    EXPECT_TRUE(roundTrip(root.get(), trackRequest(6, targets[2]->pid())).has_track_reply());
    r = roundTrip(root.get(), trackRequest(7, targets[3]->pid()));
    ASSERT_TRUE(r.has_error());
    EXPECT_EQ(r.error().errno_code(), ENOSPC);
    EXPECT_NE(r.error().message().find("tracks 3 processes, its limit"), std::string::npos)
        << r.error().message();

    // A session of an exited process makes room.
    targets[0].reset();
    for (int i = 0; i < 500 && script_->liveTrackers() > 2; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    EXPECT_TRUE(roundTrip(root.get(), trackRequest(8, targets[3]->pid())).has_track_reply());
    // Another uid's session is not theirs to use.
    r = roundTrip(d.get(), collectRequest(9, targets[1]->pid()));
    ASSERT_TRUE(r.has_error());
    EXPECT_EQ(r.error().errno_code(), EPERM);
}

TEST_F(Sessions, UnavailableBackendIsProbedAgain)
{
    script_->available = false;
    auto target = sleeper();
    ServerHarness h(test::fakeBackends(script_));
    auto c = h.connect(kRoot);
    h.start();
    ASSERT_TRUE(roundTrip(c.get(), hello()).has_hello_reply());
    auto r = roundTrip(c.get(), trackRequest(2, target->pid(), "fake"));
    ASSERT_TRUE(r.has_error());
    EXPECT_EQ(r.error().errno_code(), ENOTSUP);
    EXPECT_NE(r.error().message().find("scripted as unavailable"), std::string::npos);

    {
        std::lock_guard lock(script_->mutex);
        script_->available = true; // e.g. the guest module was loaded
    }
    r = roundTrip(c.get(), trackRequest(3, target->pid(), "fake"));
    ASSERT_TRUE(r.has_track_reply()) << r.DebugString();
    r = roundTrip(c.get(), test::backendsRequest(4));
    ASSERT_TRUE(r.has_backends_reply());
    EXPECT_TRUE(r.backends_reply().backends(0).available());
    EXPECT_TRUE(r.backends_reply().backends(0).is_default());
    // Available now, so never probed again.
    std::lock_guard lock(script_->mutex);
    EXPECT_EQ(script_->probes, 3);
}

// The brief's hostile case without root: a track that waits for its target
// (here at a latch, as a vfork() parent would make it wait) holds up only
// its own connection and its own pid.
TEST_F(Sessions, BlockedTrackHoldsUpNoOtherClient)
{
    auto stuck = sleeper();
    auto other = sleeper();
    auto tracked = sleeper();
    auto gate = std::make_shared<Latch>();
    script_->setTrack(stuck->pid(), {{}, {}, gate});
    ServerHarness h(test::fakeBackends(script_));
    auto a = h.connect(kRoot);
    auto b = h.connect(kRoot);
    auto c = h.connect(kRoot);
    h.start();
    for (int fd : {a.get(), b.get(), c.get()})
        ASSERT_TRUE(roundTrip(fd, hello()).has_hello_reply());
    ASSERT_TRUE(roundTrip(b.get(), trackRequest(2, tracked->pid())).has_track_reply());

    // a: track (stuck), then backends on the same connection.
    ASSERT_TRUE(wire::sendMessage(a.get(), trackRequest(10, stuck->pid())));
    ASSERT_TRUE(wire::sendMessage(a.get(), test::backendsRequest(11)));
    ASSERT_TRUE(gate->reached(1));
    // c: a request for the stuck pid waits for its track.
    ASSERT_TRUE(wire::sendMessage(c.get(), statsRequest(20, stuck->pid())));

    auto t0 = Clock::now();
    EXPECT_TRUE(roundTrip(b.get(), test::backendsRequest(3)).has_backends_reply());
    EXPECT_TRUE(roundTrip(b.get(), trackRequest(4, other->pid())).has_track_reply());
    EXPECT_EQ(collect(b.get(), 5, tracked->pid()).chunks.size(), 1u);
    EXPECT_TRUE(roundTrip(b.get(), statsRequest(6, tracked->pid())).has_stats_reply());
    const auto took = Clock::now() - t0;
    EXPECT_LT(took, std::chrono::milliseconds(100))
        << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
    EXPECT_FALSE(readable(a.get(), 50)) << "a's track was answered before its target was";
    EXPECT_FALSE(readable(c.get(), 0)) << "a request for a pid being tracked did not wait";

    gate->open();
    auto r = receive(a.get());
    ASSERT_TRUE(r.has_track_reply()) << r.DebugString();
    EXPECT_EQ(r.request_id(), 10u);
    r = receive(a.get());
    EXPECT_TRUE(r.has_backends_reply()) << r.DebugString();
    EXPECT_EQ(r.request_id(), 11u);
    r = receive(c.get());
    ASSERT_TRUE(r.has_stats_reply()) << r.DebugString();
    EXPECT_EQ(r.request_id(), 20u);
    EXPECT_EQ(r.stats_reply().epoch(), 1u);
}

// Untrack waits for a collect in flight; the tracker is gone when the
// untrack is answered.
TEST_F(Sessions, UntrackWaitsForTheCollectInFlight)
{
    auto target = sleeper();
    const pid_t pid = target->pid();
    auto gate = std::make_shared<Latch>();
    ServerHarness h(test::fakeBackends(script_));
    auto a = h.connect(kRoot);
    auto b = h.connect(kRoot);
    h.start();
    for (int fd : {a.get(), b.get()})
        ASSERT_TRUE(roundTrip(fd, hello()).has_hello_reply());
    ASSERT_TRUE(roundTrip(a.get(), trackRequest(2, pid)).has_track_reply());
    script_->addCollect(pid, {{{kPage, 2 * kPage, false}}, {}, gate});
    ASSERT_TRUE(wire::sendMessage(a.get(), collectRequest(3, pid)));
    ASSERT_TRUE(gate->reached(1));
    ASSERT_TRUE(wire::sendMessage(b.get(), untrackRequest(4, pid)));
    EXPECT_FALSE(readable(b.get(), 50));
    gate->open();
    Collected got = readCollect(a.get(), receive(a.get()));
    EXPECT_EQ(got.ranges.size(), 1u);
    EXPECT_TRUE(receive(b.get()).has_untrack_reply());
    EXPECT_EQ(script_->liveTrackers(), 0);
    auto r = roundTrip(b.get(), statsRequest(5, pid));
    ASSERT_TRUE(r.has_error());
    EXPECT_EQ(r.error().errno_code(), ENOENT);
}

// The target exits during a collect: the set is still answered, the
// tracker released, and the next collect says the process exited.
TEST_F(Sessions, TargetExitsDuringCollect)
{
    auto target = sleeper();
    const pid_t pid = target->pid();
    auto gate = std::make_shared<Latch>();
    ServerHarness h(test::fakeBackends(script_));
    auto c = h.connect(kRoot);
    h.start();
    ASSERT_TRUE(roundTrip(c.get(), hello()).has_hello_reply());
    ASSERT_TRUE(roundTrip(c.get(), trackRequest(2, pid)).has_track_reply());
    script_->addCollect(pid, {{{kPage, 2 * kPage, false}}, {}, gate});
    ASSERT_TRUE(wire::sendMessage(c.get(), collectRequest(3, pid)));
    ASSERT_TRUE(gate->reached(1));
    target.reset(); // SIGKILL + reap: the pidfd becomes readable
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    gate->open();
    Collected got = readCollect(c.get(), receive(c.get()));
    EXPECT_EQ(got.ranges.size(), 1u);
    EXPECT_EQ(script_->liveTrackers(), 0);
    auto r = roundTrip(c.get(), collectRequest(4, pid));
    ASSERT_TRUE(r.has_error()) << r.DebugString();
    EXPECT_EQ(r.error().errno_code(), ESRCH);
}

// A client that leaves while its collect runs: the collect still happens
// (the epoch moves on), the answer is dropped, the others are served.
TEST_F(Sessions, ClientLeavesDuringCollect)
{
    auto target = sleeper();
    const pid_t pid = target->pid();
    auto gate = std::make_shared<Latch>();
    ServerHarness h(test::fakeBackends(script_));
    auto a = h.connect(kRoot);
    auto b = h.connect(kRoot);
    h.start();
    for (int fd : {a.get(), b.get()})
        ASSERT_TRUE(roundTrip(fd, hello()).has_hello_reply());
    ASSERT_TRUE(roundTrip(a.get(), trackRequest(2, pid)).has_track_reply());
    script_->addCollect(pid, {{{kPage, 2 * kPage, false}}, {}, gate});
    ASSERT_TRUE(wire::sendMessage(a.get(), collectRequest(3, pid)));
    ASSERT_TRUE(gate->reached(1));
    a.reset();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    gate->open();
    Collected got = collect(b.get(), 4, pid);
    ASSERT_EQ(got.chunks.size(), 1u);
    EXPECT_EQ(got.chunks[0].collect_chunk().epoch(), 2u);
    h.stopLoop(); // the server is not thread-safe
    EXPECT_EQ(h.server().connectionCount(), 1u);
}

// Shutdown waits for the work in flight and releases what it held.
TEST_F(Sessions, ShutdownWaitsForWorkInFlight)
{
    auto target = sleeper();
    const pid_t pid = target->pid();
    auto gate = std::make_shared<Latch>();
    auto h = std::make_unique<ServerHarness>(test::fakeBackends(script_));
    auto c = h->connect(kRoot);
    h->start();
    ASSERT_TRUE(roundTrip(c.get(), hello()).has_hello_reply());
    ASSERT_TRUE(roundTrip(c.get(), trackRequest(2, pid)).has_track_reply());
    script_->addCollect(pid, {{{kPage, 2 * kPage, false}}, {}, gate});
    ASSERT_TRUE(wire::sendMessage(c.get(), collectRequest(3, pid)));
    ASSERT_TRUE(gate->reached(1));
    std::thread opener([gate] {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        gate->open();
    });
    auto t0 = Clock::now();
    h.reset();
    EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(150));
    opener.join();
    EXPECT_EQ(script_->liveTrackers(), 0);
    std::lock_guard lock(script_->mutex);
    EXPECT_EQ(script_->collects_done, 1);
}

} // namespace
} // namespace ooh

// SPDX-License-Identifier: Apache-2.0
// The protocol over socketpairs: the handshake, bad input (garbage,
// oversized, unknown type, wrong version, out of order) gets an error and
// that connection is closed while the daemon keeps serving the others;
// requests the peer's credentials do not allow are refused.
#include "server_harness.h"

#include <gtest/gtest.h>
#include <unistd.h>

namespace ooh {
namespace {

using test::backendsRequest;
using test::hello;
using test::roundTrip;
using test::ServerHarness;

const PeerCredentials kRoot{::getpid(), 0, 0};
const PeerCredentials kStranger{::getpid(), 4242, 4242};

// After a fatal error the server closes: recv sees EOF.
bool isClosed(int fd)
{
    char b;
    return ::recv(fd, &b, 1, 0) == 0;
}

TEST(Protocol, HandshakeAndBackends)
{
    ServerHarness h(makeBackends());
    auto c = h.connect(kRoot);
    h.start();
    auto r = roundTrip(c.get(), hello());
    ASSERT_TRUE(r.has_hello_reply());
    EXPECT_EQ(r.request_id(), 1u);
    EXPECT_EQ(r.hello_reply().protocol_version(), wire::kProtocolVersion);
    r = roundTrip(c.get(), backendsRequest(2));
    ASSERT_TRUE(r.has_backends_reply());
    EXPECT_EQ(r.request_id(), 2u);
    EXPECT_GE(r.backends_reply().backends_size(), 1);
    EXPECT_EQ(r.backends_reply().backends(0).name(), "uffd-wp");
}

// A client that sends many requests before reading any reply fills its
// socket: the server queues the rest and sends them, in order, once the
// client reads (EPOLLOUT), without losing or reordering one.
TEST(Protocol, RepliesQueuedForASlowReaderArriveInOrder)
{
    ServerHarness h(makeBackends());
    auto c = h.connect(kRoot);
    int small = 4096;
    ASSERT_EQ(::setsockopt(c.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    h.start();
    ASSERT_TRUE(roundTrip(c.get(), hello()).has_hello_reply());
    constexpr uint64_t kRequests = 500;
    for (uint64_t id = 2; id < 2 + kRequests; ++id)
        ASSERT_TRUE(wire::sendMessage(c.get(), backendsRequest(id))) << "request " << id;
    for (uint64_t id = 2; id < 2 + kRequests; ++id) {
        auto r = wire::receiveMessage(c.get());
        ASSERT_TRUE(r) << "reply " << id << ": " << r.error().message;
        ASSERT_TRUE(r->has_backends_reply()) << "reply " << id;
        ASSERT_EQ(r->request_id(), id);
    }
    // The connection still answers after its queue drained.
    EXPECT_EQ(roundTrip(c.get(), backendsRequest(9999)).request_id(), 9999u);
}

TEST(Protocol, GarbageClosesOnlyThatConnection)
{
    ServerHarness h(makeBackends());
    auto bad = h.connect(kRoot);
    auto good = h.connect(kRoot);
    h.start();
    ASSERT_TRUE(roundTrip(good.get(), hello()).has_hello_reply());
    const char garbage[] = "\xff\xff\xff\xff\x0f garbage";
    ASSERT_GT(::send(bad.get(), garbage, sizeof(garbage), 0), 0);
    auto r = wire::receiveMessage(bad.get());
    ASSERT_TRUE(r);
    ASSERT_TRUE(r->has_error());
    EXPECT_EQ(r->error().errno_code(), EBADMSG);
    EXPECT_TRUE(isClosed(bad.get()));
    // The other client is still served.
    EXPECT_TRUE(roundTrip(good.get(), backendsRequest(7)).has_backends_reply());
}

TEST(Protocol, OversizedMessage)
{
    ServerHarness h(makeBackends());
    auto c = h.connect(kRoot);
    h.start();
    std::string big(wire::kMaxMessageBytes + 100, 'x');
    ASSERT_GT(::send(c.get(), big.data(), big.size(), 0), 0);
    auto r = wire::receiveMessage(c.get());
    ASSERT_TRUE(r);
    ASSERT_TRUE(r->has_error());
    EXPECT_EQ(r->error().errno_code(), EMSGSIZE);
    EXPECT_TRUE(isClosed(c.get()));
}

TEST(Protocol, TruncatedMessage)
{
    ServerHarness h(makeBackends());
    auto c = h.connect(kRoot);
    h.start();
    std::string bytes = wire::encode(hello()).value();
    ASSERT_GT(::send(c.get(), bytes.data(), bytes.size() - 1, 0), 0);
    auto r = wire::receiveMessage(c.get());
    ASSERT_TRUE(r);
    ASSERT_TRUE(r->has_error());
    EXPECT_TRUE(isClosed(c.get()));
}

TEST(Protocol, UnknownMessageType)
{
    ServerHarness h(makeBackends());
    auto c = h.connect(kRoot);
    h.start();
    // Field 99 is no body type this daemon knows: decodes to BODY_NOT_SET.
    const char unknown[] = {0x08, 0x05, static_cast<char>(0x9a), 0x06, 0x00};
    ASSERT_GT(::send(c.get(), unknown, sizeof(unknown), 0), 0);
    auto r = wire::receiveMessage(c.get());
    ASSERT_TRUE(r);
    ASSERT_TRUE(r->has_error());
    EXPECT_EQ(r->error().errno_code(), EPROTO);
    EXPECT_TRUE(isClosed(c.get()));
}

TEST(Protocol, ReplyTypeFromClientIsAnError)
{
    ServerHarness h(makeBackends());
    auto c = h.connect(kRoot);
    h.start();
    ASSERT_TRUE(roundTrip(c.get(), hello()).has_hello_reply());
    wire::Envelope e;
    e.set_request_id(3);
    e.mutable_stats_reply()->set_pid(1);
    auto r = roundTrip(c.get(), e);
    ASSERT_TRUE(r.has_error());
    EXPECT_EQ(r.error().errno_code(), EPROTO);
    EXPECT_TRUE(isClosed(c.get()));
}

TEST(Protocol, WrongVersion)
{
    ServerHarness h(makeBackends());
    auto c = h.connect(kRoot);
    h.start();
    auto r = roundTrip(c.get(), hello(wire::kProtocolVersion + 1));
    ASSERT_TRUE(r.has_error());
    EXPECT_EQ(r.error().errno_code(), EPROTONOSUPPORT);
    EXPECT_TRUE(isClosed(c.get()));
}

TEST(Protocol, RequestBeforeHello)
{
    ServerHarness h(makeBackends());
    auto c = h.connect(kRoot);
    h.start();
    wire::Envelope e;
    e.set_request_id(4);
    e.mutable_collect()->set_pid(1);
    auto r = roundTrip(c.get(), e);
    ASSERT_TRUE(r.has_error());
    EXPECT_EQ(r.error().errno_code(), EPROTO);
    EXPECT_TRUE(isClosed(c.get()));
}

TEST(Protocol, PidThePeerMayNotTouch)
{
    ServerHarness h(makeBackends());
    auto c = h.connect(kStranger);
    h.start();
    ASSERT_TRUE(roundTrip(c.get(), hello()).has_hello_reply());
    wire::Envelope e;
    e.set_request_id(5);
    e.mutable_track()->set_pid(1); // init, owned by root
    auto r = roundTrip(c.get(), e);
    ASSERT_TRUE(r.has_error());
    EXPECT_EQ(r.error().errno_code(), EPERM);
    EXPECT_NE(r.error().message().find("uid 4242 must show that it may trace pid 1"),
              std::string::npos)
        << r.error().message();
    // A refusal is not a protocol error: the connection stays usable.
    EXPECT_TRUE(roundTrip(c.get(), backendsRequest(6)).has_backends_reply());
}

TEST(Protocol, CollectOfUntrackedPid)
{
    ServerHarness h(makeBackends());
    auto c = h.connect(kRoot);
    h.start();
    ASSERT_TRUE(roundTrip(c.get(), hello()).has_hello_reply());
    wire::Envelope e;
    e.set_request_id(8);
    e.mutable_collect()->set_pid(::getpid());
    auto r = roundTrip(c.get(), e);
    ASSERT_TRUE(r.has_error());
    EXPECT_EQ(r.error().errno_code(), ENOENT);
    EXPECT_NE(r.error().message().find("not tracked"), std::string::npos);
}

TEST(Protocol, UnknownBackendIsRefused)
{
    ServerHarness h(makeBackends());
    auto c = h.connect(kRoot);
    h.start();
    ASSERT_TRUE(roundTrip(c.get(), hello()).has_hello_reply());
    wire::Envelope e;
    e.set_request_id(9);
    e.mutable_track()->set_pid(::getpid());
    e.mutable_track()->set_backend("no-such-backend");
    auto r = roundTrip(c.get(), e);
    ASSERT_TRUE(r.has_error());
    EXPECT_EQ(r.error().errno_code(), EINVAL);
    EXPECT_NE(r.error().message().find("unknown backend"), std::string::npos);
}

} // namespace
} // namespace ooh

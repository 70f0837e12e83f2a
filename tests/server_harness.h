// SPDX-License-Identifier: Apache-2.0
// A Server driven on a background thread, with raw protocol clients on
// socketpairs whose peer credentials the test chooses.
#pragma once

#include "server.h"
#include "wire.h"

#include <atomic>
#include <sys/socket.h>
#include <thread>

namespace ooh::test {

class ServerHarness {
public:
    explicit ServerHarness(std::vector<std::unique_ptr<Backend>> backends, ServerLimits limits = {})
        : server_(std::move(backends), limits)
    {
        server_.probeBackends();
    }
    ~ServerHarness() { stopLoop(); }

    // A connected client socket; the server sees `peer` as its credentials.
    // Must be called before start() (the server is not thread-safe).
    UniqueFD connect(const PeerCredentials &peer)
    {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
            return UniqueFD();
        auto r = server_.addConnection(UniqueFD(sv[1]), peer);
        (void)r;
        struct timeval tv = {10, 0};
        ::setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        return UniqueFD(sv[0]);
    }

    void start()
    {
        loop_ = std::thread([this] {
            while (!stop_)
                if (!server_.runOnce(10))
                    break;
        });
    }
    void stopLoop()
    {
        stop_ = true;
        if (loop_.joinable())
            loop_.join();
    }
    Server &server() { return server_; }

private:
    Server server_;
    std::atomic<bool> stop_{false};
    std::thread loop_;
};

inline wire::Envelope hello(uint32_t version = wire::kProtocolVersion)
{
    wire::Envelope e;
    e.set_request_id(1);
    e.mutable_hello()->set_protocol_version(version);
    return e;
}

inline wire::Envelope backendsRequest(uint64_t id)
{
    wire::Envelope e;
    e.set_request_id(id);
    e.mutable_backends();
    return e;
}

// Sends and receives one message; an empty Envelope on failure.
inline wire::Envelope roundTrip(int fd, const wire::Envelope &req)
{
    if (!wire::sendMessage(fd, req))
        return {};
    auto r = wire::receiveMessage(fd);
    return r ? *r : wire::Envelope{};
}

} // namespace ooh::test

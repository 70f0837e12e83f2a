// SPDX-License-Identifier: Apache-2.0
// Implementation of common/wire.h.
#include "wire.h"

#include <sys/socket.h>
#include <vector>

namespace ooh::wire {

Result<Envelope> decode(const void *data, size_t len)
{
    if (len > kMaxMessageBytes)
        return ooh::makeError(EMSGSIZE, "message of " + std::to_string(len) +
                                            " bytes exceeds the limit of " +
                                            std::to_string(kMaxMessageBytes));
    Envelope msg;
    if (!msg.ParseFromArray(data, static_cast<int>(len)))
        return ooh::makeError(EBADMSG, "malformed message (not a valid protobuf Envelope)");
    if (msg.body_case() == Envelope::BODY_NOT_SET)
        return ooh::makeError(EPROTO, "message has no known type");
    return msg;
}

Result<std::string> encode(const Envelope &msg)
{
    size_t size = msg.ByteSizeLong();
    if (size > kMaxMessageBytes)
        return ooh::makeError(EMSGSIZE, "outgoing message of " + std::to_string(size) +
                                            " bytes exceeds the limit");
    std::string out;
    if (!msg.SerializeToString(&out))
        return ooh::makeError(EINVAL, "cannot serialize message");
    return out;
}

Result<void> sendMessage(int fd, const Envelope &msg)
{
    auto bytes = encode(msg);
    if (!bytes)
        return bytes.takeError();
    for (;;) {
        ssize_t n = ::send(fd, bytes->data(), bytes->size(), MSG_NOSIGNAL);
        if (n >= 0)
            return {};
        if (errno != EINTR)
            return ooh::Error::fromErrno(errno, "send to oohd");
    }
}

Result<Envelope> receiveMessage(int fd)
{
    std::vector<char> buf(kMaxMessageBytes + 1);
    for (;;) {
        ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_TRUNC);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return ooh::Error::fromErrno(errno, "receive from oohd");
        }
        if (n == 0)
            return ooh::makeError(ECONNRESET, "oohd closed the connection");
        if (static_cast<size_t>(n) > kMaxMessageBytes)
            return ooh::makeError(EMSGSIZE, "oversized message from oohd");
        return decode(buf.data(), static_cast<size_t>(n));
    }
}

Envelope errorReply(uint64_t request_id, int errno_code, const std::string &message)
{
    Envelope e;
    e.set_request_id(request_id);
    e.mutable_error()->set_errno_code(errno_code);
    e.mutable_error()->set_message(message);
    return e;
}

} // namespace ooh::wire

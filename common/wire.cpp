// SPDX-License-Identifier: Apache-2.0
// Implementation of common/wire.h.
#include "wire.h"

#include <cstring>
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

Result<void> sendMessage(int fd, const Envelope &msg, int pass_fd, int pass_fd2)
{
    auto bytes = encode(msg);
    if (!bytes)
        return bytes.takeError();
    union {
        char buf[CMSG_SPACE(2 * sizeof(int))];
        struct cmsghdr align;
    } control = {};
    struct iovec iov = {bytes->data(), bytes->size()};
    struct msghdr mh = {};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    int fds[2];
    size_t nfds = 0;
    for (int f : {pass_fd, pass_fd2})
        if (f >= 0)
            fds[nfds++] = f;
    if (nfds > 0) {
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        std::memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
    }
    for (;;) {
        ssize_t n = ::sendmsg(fd, &mh, MSG_NOSIGNAL);
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

void encodeRanges(CollectChunk *chunk, const PageRange *first, size_t count, uint64_t page_size)
{
    uint64_t prev_end = 0;
    chunk->mutable_page_runs()->Reserve(static_cast<int>(2 * count));
    for (size_t i = 0; i < count; ++i) {
        const PageRange &r = first[i];
        chunk->add_page_runs((r.start - prev_end) / page_size);
        chunk->add_page_runs((r.end - r.start) / page_size);
        if (r.wholesale)
            chunk->add_wholesale(static_cast<uint32_t>(i));
        prev_end = r.end;
    }
}

Result<void> decodeRanges(const CollectChunk &chunk, std::vector<PageRange> &out)
{
    const uint64_t page = chunk.page_size();
    if (page == 0 || (page & (page - 1)) != 0 || chunk.page_runs_size() % 2 != 0)
        return ooh::makeError(EPROTO, "malformed collect chunk");
    const size_t base = out.size();
    const size_t count = static_cast<size_t>(chunk.page_runs_size()) / 2;
    uint64_t prev_end = 0;
    for (size_t i = 0; i < count; ++i) {
        uint64_t gap = chunk.page_runs(static_cast<int>(2 * i));
        uint64_t len = chunk.page_runs(static_cast<int>(2 * i + 1));
        // Addresses stay below 2^64: check in pages before multiplying.
        uint64_t limit = UINT64_MAX / page;
        uint64_t start_page = prev_end / page + gap;
        if (gap > limit || len == 0 || len > limit || start_page < gap || start_page > limit - len)
            return ooh::makeError(EPROTO, "collect chunk has an impossible range");
        out.push_back({start_page * page, (start_page + len) * page, false});
        prev_end = out.back().end;
    }
    for (uint32_t idx : chunk.wholesale()) {
        if (idx >= count)
            return ooh::makeError(EPROTO, "collect chunk has a bad wholesale index");
        out[base + idx].wholesale = true;
    }
    return {};
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

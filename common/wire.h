// SPDX-License-Identifier: Apache-2.0
// Framing of the oohd protocol: one wire::Envelope per SOCK_SEQPACKET packet,
// with a hard size limit, shared by the daemon and libooh.
#pragma once

#include "ooh.pb.h"
#include "page_range.h"
#include "result.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace ooh::wire {

// Every packet, both ways. Collect replies are chunked to stay below it.
inline constexpr size_t kMaxMessageBytes = 64 * 1024;
// Ranges per CollectChunk. A range costs at most two 64-bit varints of page
// counts (2 x 10 bytes) plus a wholesale index (5 bytes): 2500 ranges stay
// under kMaxMessageBytes even in the worst case.
inline constexpr size_t kMaxRangesPerChunk = 2500;
inline constexpr uint32_t kProtocolVersion = VERSION_CURRENT;

// Parses one packet. Fails with EMSGSIZE, EBADMSG (not a valid Envelope)
// or EPROTO (no body set: unknown or missing message type).
Result<Envelope> decode(const void *data, size_t len);
// Serializes; fails with EMSGSIZE above kMaxMessageBytes.
Result<std::string> encode(const Envelope &msg);

// Blocking helpers for clients (the daemon does its own non-blocking I/O).
// pass_fd, pass_fd2 >= 0: the descriptors travel with the message, in
// that order (SCM_RIGHTS).
Result<void> sendMessage(int fd, const Envelope &msg, int pass_fd = -1, int pass_fd2 = -1);
// Receives one packet; a packet larger than kMaxMessageBytes is consumed and
// reported as EMSGSIZE; an orderly shutdown of the peer is ECONNRESET.
Result<Envelope> receiveMessage(int fd);

// Appends ranges [first, first + count) to a chunk (page_runs, wholesale).
void encodeRanges(CollectChunk *chunk, const PageRange *first, size_t count, uint64_t page_size);
// Decodes a chunk's ranges, appending them to `out`; EPROTO on a malformed
// chunk (odd page_runs, bad page size, overflow, bad wholesale index).
Result<void> decodeRanges(const CollectChunk &chunk, std::vector<PageRange> &out);

Envelope errorReply(uint64_t request_id, int errno_code, const std::string &message);

} // namespace ooh::wire

// SPDX-License-Identifier: Apache-2.0
// Framing of the oohd protocol: one wire::Envelope per SOCK_SEQPACKET packet,
// with a hard size limit, shared by the daemon and libooh.
#pragma once

#include "ooh.pb.h"
#include "result.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace ooh::wire {

// Every packet, both ways. Collect replies are chunked to stay below it.
inline constexpr size_t kMaxMessageBytes = 64 * 1024;
// Ranges per CollectChunk: a Range encodes to at most 2 + 2*11 + 2 = 26
// bytes, so this keeps a chunk well under kMaxMessageBytes.
inline constexpr size_t kMaxRangesPerChunk = 2000;
inline constexpr uint32_t kProtocolVersion = VERSION_CURRENT;

// Parses one packet. Fails with EMSGSIZE, EBADMSG (not a valid Envelope)
// or EPROTO (no body set: unknown or missing message type).
Result<Envelope> decode(const void *data, size_t len);
// Serializes; fails with EMSGSIZE above kMaxMessageBytes.
Result<std::string> encode(const Envelope &msg);

// Blocking helpers for clients (the daemon does its own non-blocking I/O).
Result<void> sendMessage(int fd, const Envelope &msg);
// Receives one packet; a packet larger than kMaxMessageBytes is consumed and
// reported as EMSGSIZE; an orderly shutdown of the peer is ECONNRESET.
Result<Envelope> receiveMessage(int fd);

Envelope errorReply(uint64_t request_id, int errno_code, const std::string &message);

} // namespace ooh::wire

// SPDX-License-Identifier: Apache-2.0
// May this client touch that process? The kernel's ptrace access rules,
// applied to the credentials of the client's socket (SO_PEERCRED).
#pragma once

#include "result.h"

#include <sys/socket.h>
#include <sys/types.h>

namespace ooh {

struct PeerCredentials {
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
};

// Root may track anything. Others may track a process whose real, effective
// and saved user and group IDs are all theirs, that is dumpable, and (with
// Yama's ptrace_scope = 1) that descends from the client process.
// Fails with EPERM (or ESRCH) and a message naming the reason.
Result<void> checkPeerMayTrace(const PeerCredentials &peer, pid_t target);

} // namespace ooh

// SPDX-License-Identifier: Apache-2.0
// May this client track that process? The kernel decides: the client
// passes a /proc/PID/mem it opened itself, which the kernel lets it open
// only if it may ptrace-attach the process (PTRACE_MODE_ATTACH_FSCREDS:
// ids, dumpability, capabilities, Yama, LSMs). oohd checks that the fd is
// that file of the process it opened, and nothing else.
#pragma once

#include "process.h"
#include "result.h"
#include "unique_fd.h"

#include <sys/types.h>

namespace ooh {

// A client as its socket's credentials (SO_PEERCRED) show it.
struct PeerCredentials {
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
};

// Root may track anything without a proof. Anyone else must pass `proof`:
// /proc/PID/mem of `target`, opened from the same /proc as oohd's (the
// same procfs instance, so the same file), while `target` still lives.
// Fails with EPERM and a message saying what to pass.
Result<void> checkAccessProof(const PeerCredentials &peer, const Process &target,
                              const UniqueFD &proof);

} // namespace ooh

// SPDX-License-Identifier: Apache-2.0
// A client of oohd as its socket's credentials (SO_PEERCRED) show it.
#pragma once

#include <sys/types.h>

namespace ooh {

struct PeerCredentials {
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
};

} // namespace ooh

// SPDX-License-Identifier: Apache-2.0
// What a pidfd names, read from its fdinfo: shared by oohd (a pidfd a client
// passed) and libooh (a pidfd its caller gave).
#pragma once

#include "result.h"

#include <sys/types.h>

namespace ooh {

// The pid of the pidfd's process in the PID namespace of our /proc: > 0;
// 0 once it has exited or when it is not visible in that namespace. EBADF
// if the fd is not a pidfd; the errno of the open or read otherwise.
Result<pid_t> pidOfPidfd(int pidfd);

} // namespace ooh

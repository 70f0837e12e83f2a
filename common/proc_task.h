// SPDX-License-Identifier: Apache-2.0
// The threads of a process and their scheduler state, from /proc/PID/task:
// shared by oohd (which stops threads) and oohctl (which checks that a
// killed criu left none stopped).
#pragma once

#include <sys/types.h>
#include <vector>

namespace ooh {

// The thread IDs of pid (from /proc/PID/task), in directory order.
std::vector<pid_t> listThreads(pid_t pid);
// State letter of /proc/PID/task/TID/stat ('R', 'S', 'D', 'T', ...), or '?'.
char threadState(pid_t pid, pid_t tid);

} // namespace ooh

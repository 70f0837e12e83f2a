// SPDX-License-Identifier: Apache-2.0
// The threads of a process and their scheduler state, from /proc/PID/task:
// shared by oohd (which stops threads) and oohctl (which checks that a
// killed criu left none stopped).
#pragma once

#include <string_view>
#include <sys/types.h>
#include <vector>

namespace ooh {

// The thread IDs of pid (from /proc/PID/task), in directory order.
std::vector<pid_t> listThreads(pid_t pid);
// State letter of /proc/PID/task/TID/stat ('R', 'S', 'D', 'T', ...), or '?'.
char threadState(pid_t pid, pid_t tid);

// The same through an open /proc/PID directory (O_PATH is enough): once
// that process has exited they find nothing, even if its pid is reused.
std::vector<pid_t> listThreadsAt(int proc_dir);
char threadStateAt(int proc_dir, pid_t tid);
// The number after `key` ("TracerPid:", "Seccomp:") in task/TID/status;
// 0 if the line is missing or the file cannot be read.
long threadStatusNumberAt(int proc_dir, pid_t tid, std::string_view key);

} // namespace ooh

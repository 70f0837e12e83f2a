// SPDX-License-Identifier: Apache-2.0
// Process: a target process held by pidfd, so that a reused PID can never be
// mistaken for the process that was looked up.
#pragma once

#include "proc_task.h"
#include "result.h"
#include "unique_fd.h"

#include <cstdint>
#include <string>
#include <vector>
#include <sys/types.h>

namespace ooh {

class Process {
public:
    Process() = default;  // an empty handle; see open()
    // Opens a pidfd and reads the start time; the start time is read again
    // after pidfd_open to make sure both refer to the same process.
    static Result<Process> open(pid_t pid);
    // Adopts a pidfd (e.g. one a client passed); the pid is the one in
    // oohd's PID namespace.
    static Result<Process> fromPidfd(UniqueFD pidfd);

    pid_t pid() const { return pid_; }
    int pidfd() const { return pidfd_.get(); }
    // Start time in clock ticks since boot (field 22 of /proc/PID/stat).
    uint64_t startTime() const { return start_time_; }
    // False once the process has exited (pidfd readable).
    bool isAlive() const;
    // "/proc/PID/<name>"
    std::string procPath(const char *name) const;

private:
    pid_t pid_ = -1;
    uint64_t start_time_ = 0;
    UniqueFD pidfd_;
};

// Parses the start time out of /proc/PID/stat; 0 on error.
uint64_t readStartTime(pid_t pid);
// The same, with the reason it failed: ESRCH once pid is gone, EMFILE and
// ENFILE (oohd out of fds) as themselves, not as an exit.
Result<uint64_t> queryStartTime(pid_t pid);
// The error for an fd oohd could not get while doing `what`. Running out of
// fds is oohd's trouble, not the target's: the message says so.
Error openFailure(int err, const std::string &what);

} // namespace ooh

// SPDX-License-Identifier: Apache-2.0
// Implementation of oohd/process.h.
#include "process.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace ooh {

uint64_t readStartTime(pid_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat;
    if (!std::getline(in, stat))
        return 0;
    // comm (field 2) may contain spaces and parentheses: skip to the last ')'.
    auto close = stat.rfind(')');
    if (close == std::string::npos)
        return 0;
    std::istringstream fields(stat.substr(close + 2));
    std::string field;
    // Fields 3..21 precede starttime (22).
    for (int i = 3; i <= 21; ++i)
        if (!(fields >> field))
            return 0;
    uint64_t start = 0;
    fields >> start;
    return start;
}

Result<Process> Process::open(pid_t pid)
{
    if (pid <= 0)
        return makeError(EINVAL, "invalid pid " + std::to_string(pid));
    uint64_t before = readStartTime(pid);
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0)
        return Error::fromErrno(errno, "pidfd_open(" + std::to_string(pid) + ")");
    Process p;
    p.pid_ = pid;
    p.pidfd_.reset(fd);
    uint64_t after = readStartTime(pid);
    if (before == 0 || before != after)
        return makeError(ESRCH, "process " + std::to_string(pid) + " exited while being opened");
    p.start_time_ = after;
    return p;
}

bool Process::isAlive() const
{
    struct pollfd pfd = {pidfd_.get(), POLLIN, 0};
    return ::poll(&pfd, 1, 0) == 0;
}

std::string Process::procPath(const char *name) const
{
    return "/proc/" + std::to_string(pid_) + "/" + name;
}

} // namespace ooh

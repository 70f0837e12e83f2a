// SPDX-License-Identifier: Apache-2.0
// Implementation of oohd/process.h.
#include "process.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
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

std::vector<pid_t> listThreads(pid_t pid)
{
    std::vector<pid_t> tids;
    DIR *dir = ::opendir(("/proc/" + std::to_string(pid) + "/task").c_str());
    if (!dir)
        return tids;
    while (struct dirent *de = ::readdir(dir)) {
        pid_t tid = std::atoi(de->d_name);
        if (tid > 0)
            tids.push_back(tid);
    }
    ::closedir(dir);
    return tids;
}

char threadState(pid_t pid, pid_t tid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/stat");
    std::string stat;
    if (!std::getline(in, stat))
        return '?';
    auto close = stat.rfind(')');
    return close != std::string::npos && close + 2 < stat.size() ? stat[close + 2] : '?';
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

Result<Process> Process::fromPidfd(UniqueFD pidfd)
{
    // fdinfo of a pidfd names its pid in the PID namespace of our /proc.
    std::ifstream in("/proc/self/fdinfo/" + std::to_string(pidfd.get()));
    std::string line;
    pid_t pid = 0;
    bool is_pidfd = false;
    while (std::getline(in, line)) {
        if (line.rfind("Pid:", 0) == 0) {
            pid = std::atoi(line.c_str() + 4);
            is_pidfd = true;
        }
    }
    if (!is_pidfd)
        return makeError(EBADF, "the file descriptor passed is not a pidfd");
    if (pid <= 0)
        return makeError(ESRCH, "the process of the pidfd passed has exited or is not visible "
                                "in oohd's PID namespace");
    Process p;
    p.pid_ = pid;
    p.pidfd_ = std::move(pidfd);
    p.start_time_ = readStartTime(pid);
    // While the pidfd's process lives, `pid` is its pid: so the start time
    // read above is its own if it is still alive now.
    if (p.start_time_ == 0 || !p.isAlive())
        return makeError(ESRCH, "the process of the pidfd passed has exited");
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

// SPDX-License-Identifier: Apache-2.0
// Implementation of oohd/process.h.
#include "process.h"

#include "pidfd.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cerrno>
#include <fstream>
#include <sstream>

namespace ooh {

namespace {

// The contents of a small /proc file, read with one fd that is closed on
// return; errno of the open or read on failure.
Result<std::string> readProcFile(const std::string &path)
{
    UniqueFD fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.isValid())
        return openFailure(errno, "open " + path);
    std::string text;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return Error::fromErrno(errno, "read " + path);
        if (n == 0)
            return text;
        text.append(buf, static_cast<size_t>(n));
    }
}

} // namespace

Error openFailure(int err, const std::string &what)
{
    if (err == EMFILE) {
        struct rlimit nofile = {};
        ::getrlimit(RLIMIT_NOFILE, &nofile);
        return makeError(EMFILE, what + ": oohd is out of file descriptors (its RLIMIT_NOFILE "
                                     "is " + std::to_string(nofile.rlim_cur) +
                                     "); untrack some processes or raise the limit "
                                     "(LimitNOFILE= in oohd.service)");
    }
    if (err == ENFILE)
        return makeError(ENFILE, what + ": the system is out of file descriptors "
                                        "(fs.file-max); oohd cannot open more");
    return Error::fromErrno(err, what);
}

Result<uint64_t> queryStartTime(pid_t pid)
{
    auto stat = readProcFile("/proc/" + std::to_string(pid) + "/stat");
    if (!stat) {
        if (stat.error().code == ENOENT || stat.error().code == ESRCH)
            return makeError(ESRCH, "process " + std::to_string(pid) + " does not exist");
        return stat.takeError();
    }
    // comm (field 2) may contain spaces and parentheses: skip to the last ')'.
    auto close = stat->rfind(')');
    if (close == std::string::npos || close + 2 > stat->size())
        return makeError(EIO, "cannot parse /proc/" + std::to_string(pid) + "/stat");
    std::istringstream fields(stat->substr(close + 2));
    std::string field;
    // Fields 3..21 precede starttime (22).
    for (int i = 3; i <= 21; ++i)
        if (!(fields >> field))
            return makeError(EIO, "cannot parse /proc/" + std::to_string(pid) + "/stat");
    uint64_t start = 0;
    if (!(fields >> start) || start == 0)
        return makeError(EIO, "cannot parse /proc/" + std::to_string(pid) + "/stat");
    return start;
}

uint64_t readStartTime(pid_t pid)
{
    auto start = queryStartTime(pid);
    return start ? *start : 0;
}

Result<Process> Process::open(pid_t pid)
{
    if (pid <= 0)
        return makeError(EINVAL, "invalid pid " + std::to_string(pid));
    auto before = queryStartTime(pid);
    if (!before)
        return before.takeError();
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0)
        return openFailure(errno, "pidfd_open(" + std::to_string(pid) + ")");
    Process p;
    p.pid_ = pid;
    p.pidfd_.reset(fd);
    auto after = queryStartTime(pid);
    if (!after && after.error().code != ESRCH)
        return after.takeError();
    if (!after || *before != *after)
        return makeError(ESRCH, "process " + std::to_string(pid) + " exited while being opened");
    p.start_time_ = *after;
    return p;
}

Result<Process> Process::fromPidfd(UniqueFD pidfd)
{
    auto named = pidOfPidfd(pidfd.get());
    if (!named) {
        if (named.error().code == EBADF)
            return makeError(EBADF, "the file descriptor passed is not a pidfd");
        return openFailure(named.error().code, "read the fdinfo of the pidfd passed");
    }
    const pid_t pid = *named;
    if (pid == 0)
        return makeError(ESRCH, "the process of the pidfd passed has exited or is not visible "
                                "in oohd's PID namespace");
    Process p;
    p.pid_ = pid;
    p.pidfd_ = std::move(pidfd);
    auto start = queryStartTime(pid);
    if (!start && start.error().code != ESRCH)
        return start.takeError();
    // While the pidfd's process lives, `pid` is its pid: so the start time
    // read above is its own if it is still alive now.
    if (!start || !p.isAlive())
        return makeError(ESRCH, "the process of the pidfd passed has exited");
    p.start_time_ = *start;
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

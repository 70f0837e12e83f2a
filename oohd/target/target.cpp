// SPDX-License-Identifier: Apache-2.0
// Implementation of oohd/target/target.h.
#include "target.h"

#include "pidfd.h"
#include "proc_file.h"
#include "proc_task.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>

namespace ooh {

namespace {

// Field 22 of /proc/PID/stat, the start time in clock ticks since boot;
// 0 if the text does not parse.
uint64_t parseStartTime(const std::string &stat)
{
    // comm (field 2) may contain spaces and parentheses: skip to the last ')'.
    auto close = stat.rfind(')');
    if (close == std::string::npos || close + 2 > stat.size())
        return 0;
    std::istringstream fields(stat.substr(close + 2));
    std::string field;
    // Fields 3..21 precede starttime (22).
    for (int i = 3; i <= 21; ++i)
        if (!(fields >> field))
            return 0;
    uint64_t start = 0;
    return fields >> start ? start : 0;
}

bool pidfdAlive(int pidfd)
{
    struct pollfd pfd = {pidfd, POLLIN, 0};
    return ::poll(&pfd, 1, 0) == 0;
}

} // namespace

Error openFailure(int err, const std::string &what)
{
    if (err == EMFILE) {
        struct rlimit nofile = {};
        ::getrlimit(RLIMIT_NOFILE, &nofile);
        return makeError(EMFILE, what +
                                     ": oohd is out of file descriptors (its RLIMIT_NOFILE "
                                     "is " +
                                     std::to_string(nofile.rlim_cur) +
                                     "); untrack some processes or raise the limit "
                                     "(LimitNOFILE= in oohd.service)");
    }
    if (err == ENFILE)
        return makeError(ENFILE, what + ": the system is out of file descriptors "
                                        "(fs.file-max); oohd cannot open more");
    return Error::fromErrno(err, what);
}

Result<Target> Target::open(pid_t pid)
{
    if (pid <= 0)
        return makeError(EINVAL, "invalid pid " + std::to_string(pid));
    UniqueFD pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd.isValid()) {
        if (errno == ESRCH)
            return makeError(ESRCH, "process " + std::to_string(pid) + " does not exist");
        return openFailure(errno, "pidfd_open(" + std::to_string(pid) + ")");
    }
    return adopt(std::move(pidfd), pid);
}

Result<Target> Target::fromPidfd(UniqueFD pidfd)
{
    auto named = pidOfPidfd(pidfd.get());
    if (!named) {
        if (named.error().code == EBADF)
            return makeError(EBADF, "the file descriptor passed is not a pidfd");
        return openFailure(named.error().code, "read the fdinfo of the pidfd passed");
    }
    if (*named == 0)
        return makeError(ESRCH, "the process of the pidfd passed has exited or is not visible "
                                "in oohd's PID namespace");
    auto target = adopt(std::move(pidfd), *named);
    if (!target && target.error().code == ESRCH)
        return makeError(ESRCH, "the process of the pidfd passed has exited");
    return target;
}

Result<Target> Target::adopt(UniqueFD pidfd, pid_t pid)
{
    const std::string dir_path = "/proc/" + std::to_string(pid);
    const Error gone =
        makeError(ESRCH, "process " + std::to_string(pid) + " exited while being opened");
    auto h = std::make_shared<Handles>();
    h->pid = pid;
    h->pidfd = std::move(pidfd);
    h->dir.reset(::open(dir_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!h->dir.isValid())
        return errno == ENOENT ? gone : openFailure(errno, "open " + dir_path);
    UniqueFD stat(::openat(h->dir.get(), "stat", O_RDONLY | O_CLOEXEC));
    if (!stat.isValid())
        return errno == ENOENT || errno == ESRCH ? gone
                                                 : openFailure(errno, "open " + dir_path + "/stat");
    auto text = readAll(stat.get(), dir_path + "/stat");
    if (!text)
        return text.error().code == ESRCH ? gone : text.takeError();
    h->start_time = parseStartTime(*text);
    if (h->start_time == 0)
        return makeError(EIO, "cannot parse " + dir_path + "/stat");
    // The pidfd came first. Its process still living now means the pid has
    // named it all along, so the directory and the start time are its own.
    if (!pidfdAlive(h->pidfd.get()))
        return gone;
    return Target(std::move(h));
}

bool Target::isAlive() const { return h_ && pidfdAlive(h_->pidfd.get()); }

Error Target::exited(const char *when) const
{
    return makeError(ESRCH, "process " + std::to_string(pid()) + " exited" + when);
}

Result<UniqueFD> Target::openFile(const std::string &name, int flags) const
{
    if (!h_)
        return makeError(EBADF, "no process is open to read " + name + " of");
    UniqueFD fd(::openat(h_->dir.get(), name.c_str(), flags | O_CLOEXEC));
    const int err = errno;
    // Past its exit, the directory finds nothing (ENOENT, ESRCH); a zombie's
    // files still open but hold nothing of it.
    if (!isAlive())
        return exited("");
    if (!fd.isValid())
        return openFailure(err, "open /proc/" + std::to_string(pid()) + "/" + name);
    return fd;
}

Result<std::string> Target::readFile(const std::string &name) const
{
    auto fd = openFile(name, O_RDONLY);
    if (!fd)
        return fd.takeError();
    return readAll(fd->get(), "/proc/" + std::to_string(pid()) + "/" + name);
}

Result<std::vector<MapEntry>> Target::readMaps() const
{
    auto fd = openFile("maps", O_RDONLY);
    if (!fd)
        return fd.takeError();
    auto maps = ooh::readMaps(fd->get(), "/proc/" + std::to_string(pid()) + "/maps");
    // A process that exits while its maps are read reads short or empty.
    if (!isAlive())
        return exited(" while its mappings were read");
    // Every user process maps something; none means the file read through
    // the main thread, which has exited while others run on. Reporting
    // nothing then would under-report.
    if (maps && maps->empty())
        return makeError(EIO, "/proc/" + std::to_string(pid()) +
                                  "/maps is empty: its main thread has exited (or it is a "
                                  "kernel thread), so oohd cannot see its mappings");
    return maps;
}

std::vector<pid_t> Target::threads() const
{
    return h_ ? listThreadsAt(h_->dir.get()) : std::vector<pid_t>();
}

size_t Target::threadCount() const
{
    auto status = readFile("status");
    auto threads = status ? keyedField(*status, "Threads:") : std::nullopt;
    return threads ? std::strtoul(std::string(*threads).c_str(), nullptr, 10) : 0;
}

bool Target::hasThread(pid_t tid) const
{
    return h_ && ::faccessat(h_->dir.get(), ("task/" + std::to_string(tid)).c_str(), F_OK, 0) == 0;
}

char Target::threadState(pid_t tid) const { return h_ ? threadStateAt(h_->dir.get(), tid) : '?'; }

long Target::threadStatusNumber(pid_t tid, std::string_view key) const
{
    return h_ ? threadStatusNumberAt(h_->dir.get(), tid, key) : 0;
}

Result<void> Target::checkAccessProof(const PeerCredentials &peer, const UniqueFD &proof) const
{
    if (peer.uid == 0)
        return {};
    const std::string who = "uid " + std::to_string(peer.uid);
    const std::string pid = std::to_string(this->pid());
    if (!proof.isValid())
        return makeError(EPERM, who + " must show that it may trace pid " + pid +
                                    " by passing /proc/" + pid +
                                    "/mem opened itself (libooh and oohctl do; upgrade the "
                                    "client)");
    struct stat passed = {};
    if (::fstat(proof.get(), &passed) < 0)
        return Error::fromErrno(errno, "fstat of the /proc/" + pid + "/mem passed by " + who);
    // oohd's own view of that file, without opening it (O_PATH runs no
    // access check), looked up from the directory of the process oohd
    // opened. The client's open file pins its dentry while the process
    // lives, so the same file of the same procfs has the same device and
    // inode; another process, a reused pid or another /proc mount (another
    // PID namespace) has not.
    auto ours = openFile("mem", O_PATH);
    if (!ours)
        return ours.takeError();
    struct stat mine = {};
    if (::fstat(ours->get(), &mine) < 0)
        return Error::fromErrno(errno, "fstat /proc/" + pid + "/mem");
    if (!S_ISREG(passed.st_mode) || passed.st_dev != mine.st_dev || passed.st_ino != mine.st_ino)
        return makeError(EPERM, "the file " + who + " passed is not /proc/" + pid +
                                    "/mem of that process as oohd's /proc shows it (a client in "
                                    "another PID namespace must run as root)");
    return {};
}

} // namespace ooh

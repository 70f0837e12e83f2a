// SPDX-License-Identifier: Apache-2.0
// Implementation of common/proc_task.h.
#include "proc_task.h"

#include "proc_file.h"
#include "unique_fd.h"

#include <cstdlib>
#include <dirent.h>
#include <fcntl.h>
#include <string>

namespace ooh {

namespace {

UniqueFD openProcDir(pid_t pid)
{
    return UniqueFD(
        ::open(("/proc/" + std::to_string(pid)).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
}

// The text of task/TID/<name> under proc_dir; empty if it cannot be read.
std::string readTaskFile(int proc_dir, pid_t tid, const char *name)
{
    const std::string path = "task/" + std::to_string(tid) + "/" + name;
    UniqueFD fd(::openat(proc_dir, path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.isValid())
        return {};
    auto text = readAll(fd.get(), path);
    return text ? std::move(*text) : std::string();
}

} // namespace

std::vector<pid_t> listThreads(pid_t pid)
{
    UniqueFD dir = openProcDir(pid);
    return dir.isValid() ? listThreadsAt(dir.get()) : std::vector<pid_t>();
}

char threadState(pid_t pid, pid_t tid)
{
    UniqueFD dir = openProcDir(pid);
    return dir.isValid() ? threadStateAt(dir.get(), tid) : '?';
}

std::vector<pid_t> listThreadsAt(int proc_dir)
{
    std::vector<pid_t> tids;
    int fd = ::openat(proc_dir, "task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return tids;
    DIR *dir = ::fdopendir(fd);
    if (!dir) {
        ::close(fd);
        return tids;
    }
    while (struct dirent *de = ::readdir(dir)) {
        pid_t tid = std::atoi(de->d_name);
        if (tid > 0)
            tids.push_back(tid);
    }
    ::closedir(dir);
    return tids;
}

char threadStateAt(int proc_dir, pid_t tid)
{
    std::string stat = readTaskFile(proc_dir, tid, "stat");
    // comm (field 2) may hold anything: the state follows the last ')'.
    auto close = stat.rfind(')');
    return close != std::string::npos && close + 2 < stat.size() ? stat[close + 2] : '?';
}

long threadStatusNumberAt(int proc_dir, pid_t tid, std::string_view key)
{
    std::string status = readTaskFile(proc_dir, tid, "status");
    auto value = keyedField(status, key);
    return value ? std::strtol(std::string(*value).c_str(), nullptr, 10) : 0;
}

} // namespace ooh

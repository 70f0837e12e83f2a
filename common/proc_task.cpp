// SPDX-License-Identifier: Apache-2.0
// Implementation of common/proc_task.h.
#include "proc_task.h"

#include <cstdlib>
#include <dirent.h>
#include <fstream>
#include <string>

namespace ooh {

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

} // namespace ooh

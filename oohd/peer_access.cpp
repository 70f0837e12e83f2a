// SPDX-License-Identifier: Apache-2.0
// Implementation of oohd/peer_access.h: a user-space rendering of the
// kernel's __ptrace_may_access() for PTRACE_MODE_ATTACH_REALCREDS.
#include "peer_access.h"

#include <fstream>
#include <sstream>
#include <string>
#include <sys/stat.h>

namespace ooh {

namespace {

struct TaskIds {
    uid_t uid[4] = {};  // real, effective, saved, fs
    gid_t gid[4] = {};
    pid_t ppid = 0;
    bool ok = false;
};

TaskIds readIds(pid_t pid)
{
    TaskIds ids;
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    int found = 0;
    while (std::getline(in, line)) {
        std::istringstream s(line);
        std::string key;
        s >> key;
        if (key == "Uid:") {
            for (auto &u : ids.uid)
                s >> u;
            ++found;
        } else if (key == "Gid:") {
            for (auto &g : ids.gid)
                s >> g;
            ++found;
        } else if (key == "PPid:") {
            s >> ids.ppid;
            ++found;
        }
    }
    ids.ok = found == 3;
    return ids;
}

int yamaScope()
{
    std::ifstream in("/proc/sys/kernel/yama/ptrace_scope");
    int scope = 0;
    if (!(in >> scope))
        return 0;
    return scope;
}

bool isDescendant(pid_t pid, pid_t ancestor)
{
    for (int depth = 0; pid > 1 && depth < 4096; ++depth) {
        if (pid == ancestor)
            return true;
        pid = readIds(pid).ppid;
    }
    return false;
}

} // namespace

Result<void> checkPeerMayTrace(const PeerCredentials &peer, pid_t target)
{
    TaskIds ids = readIds(target);
    if (!ids.ok)
        return makeError(ESRCH, "no process with pid " + std::to_string(target));
    if (peer.uid == 0)
        return {};
    const std::string who = "uid " + std::to_string(peer.uid);
    const std::string what = "pid " + std::to_string(target);
    for (int i = 0; i < 3; ++i) {
        if (ids.uid[i] != peer.uid || ids.gid[i] != peer.gid)
            return makeError(EPERM, who + " may not trace " + what + " (it runs as uid " +
                                        std::to_string(ids.uid[1]) + ", gid " +
                                        std::to_string(ids.gid[1]) +
                                        "); only root or its owner can track it");
    }
    // A non-dumpable process (setuid, prctl(PR_SET_DUMPABLE, 0)) has its
    // /proc/PID entries owned by root.
    struct stat st;
    std::string proc = "/proc/" + std::to_string(target);
    if (::stat(proc.c_str(), &st) == 0 && st.st_uid != ids.uid[1])
        return makeError(EPERM, what + " is not dumpable; only root can track it");
    switch (yamaScope()) {
    case 0:
        return {};
    case 1:
        if (isDescendant(target, peer.pid))
            return {};
        return makeError(EPERM, who + " may not trace " + what +
                                    ": kernel.yama.ptrace_scope = 1 allows only descendants");
    default:
        return makeError(EPERM, "kernel.yama.ptrace_scope >= 2: only root can track " + what);
    }
}

} // namespace ooh

// SPDX-License-Identifier: Apache-2.0
// Finding and releasing what a criu step left stopped or frozen
// (target_tree.h).
#include "target_tree.h"

#include "criu_step.h"
#include "proc_task.h"

#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sys/stat.h>

namespace ooh {

namespace {

bool exists(const std::string &p)
{
    struct stat st;
    return stat(p.c_str(), &st) == 0;
}

} // namespace

void TargetTree::snapshot()
{
    stoppedBefore_.clear();
    for (pid_t p : processes())
        if (isStopped(p))
            stoppedBefore_.insert(p);
    freezer_ = freezerOf(root_);
    frozenBefore_ = !freezer_.file.empty() && readFirstLine(freezer_.file) == freezer_.frozen;
}

void TargetTree::release(const char *step)
{
    if (!freezer_.file.empty() && !frozenBefore_ &&
        readFirstLine(freezer_.file) == freezer_.frozen) {
        std::ofstream f(freezer_.file);
        f << freezer_.thawed << "\n";
        f.close();
        std::fprintf(stderr, "%s: %s: thawed %s%s\n", tool_, step, freezer_.file.c_str(),
                     f ? "" : " (failed)");
    }
    for (pid_t p : processes()) {
        if (isStopped(p) && !stoppedBefore_.count(p)) {
            ::kill(p, SIGCONT);
            std::fprintf(stderr, "%s: %s: pid %d was left stopped: sent SIGCONT\n", tool_, step,
                         int(p));
        }
    }
    std::string state = procField(root_, "State:");
    if (state.empty())
        std::fprintf(stderr, "%s: %s: pid %d no longer exists\n", tool_, step, int(root_));
    else if (state[0] == 'T' || state[0] == 't')
        std::fprintf(stderr, "%s: %s: pid %d is still stopped (%s): kill -CONT %d\n", tool_, step,
                     int(root_), state.c_str(), int(root_));
    else
        std::fprintf(stderr, "%s: %s: pid %d left running (state %s)\n", tool_, step, int(root_),
                     state.c_str());
}

std::string TargetTree::procField(pid_t pid, const char *key)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(key, 0) == 0)
            return line.substr(line.find_first_not_of(" \t", std::strlen(key)));
    return {};
}

// Stopped if any of its threads is: criu stops thread by thread.
bool TargetTree::isStopped(pid_t pid)
{
    for (pid_t tid : ooh::listThreads(pid)) {
        char state = ooh::threadState(pid, tid);
        if (state == 'T' || state == 't')
            return true;
    }
    return false;
}

std::vector<pid_t> TargetTree::processes() const
{
    std::vector<pid_t> out{root_};
    for (size_t i = 0; i < out.size() && out.size() < 100000; i++) {
        for (pid_t tid : ooh::listThreads(out[i])) {
            std::ifstream in("/proc/" + std::to_string(out[i]) + "/task/" + std::to_string(tid) +
                             "/children");
            long child;
            while (in >> child)
                out.push_back(pid_t(child));
        }
    }
    return out;
}

// cgroup v2's cgroup.freeze, else v1's freezer.state, of pid's cgroup.
TargetTree::Freezer TargetTree::freezerOf(pid_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
    std::string line;
    while (std::getline(in, line)) {
        auto c1 = line.find(':'), c2 = line.find(':', c1 + 1);
        if (c1 == std::string::npos || c2 == std::string::npos)
            continue;
        std::string ctrl = line.substr(c1 + 1, c2 - c1 - 1), path = line.substr(c2 + 1);
        if (line.rfind("0::", 0) == 0) {
            std::string f = "/sys/fs/cgroup" + path + "/cgroup.freeze";
            if (exists(f))
                return {f, "1", "0"};
        } else if (ctrl == "freezer") {
            std::string f = "/sys/fs/cgroup/freezer" + path + "/freezer.state";
            if (exists(f))
                return {f, "FROZEN", "THAWED"};
        }
    }
    return {};
}

} // namespace ooh

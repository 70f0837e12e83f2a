// SPDX-License-Identifier: Apache-2.0
// The process tree `oohctl checkpoint` or `oohctl migrate` works on, as far
// as a killed or failed criu can have left it stopped (SIGSTOP, a group stop
// under ptrace) or frozen (cgroup freezer): found again and released.
#pragma once

#include <set>
#include <string>
#include <sys/types.h>
#include <vector>

namespace ooh {

class TargetTree {
public:
    // tool prefixes the messages ("oohctl checkpoint").
    TargetTree(pid_t root, const char *tool) : root_(root), tool_(tool) {}

    // Before each criu step: what was stopped or frozen already stays so.
    void snapshot();

    // After a step was killed or failed: thaw and continue what it left
    // frozen or stopped; says in what state the root is.
    void release(const char *step);

    // The root and its descendants (through /proc/PID/task/TID/children).
    std::vector<pid_t> processes() const;

private:
    struct Freezer {
        std::string file, frozen, thawed;
    };

    static std::string procField(pid_t pid, const char *key);
    static bool isStopped(pid_t pid);
    static Freezer freezerOf(pid_t pid);

    pid_t root_;
    const char *tool_;
    std::set<pid_t> stoppedBefore_;
    Freezer freezer_;
    bool frozenBefore_ = false;
};

} // namespace ooh

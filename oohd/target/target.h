// SPDX-License-Identifier: Apache-2.0
// Target: the process oohd tracks, held by a pidfd and an O_PATH fd of its
// /proc/PID directory, checked to be the same process once, when opened.
// Everything oohd reads of it goes through that directory fd, so a reused
// pid can never make oohd read, or act on, another process.
#pragma once

#include "peer_credentials.h"
#include "proc_maps.h"
#include "result.h"
#include "unique_fd.h"

#include <cstdint>
#include <memory>
#include <string>
#include <sys/types.h>
#include <vector>

namespace ooh {

class Target {
public:
    Target() = default; // an empty handle; see open()

    // Opens the process that has `pid` now: ESRCH, naming the pid, if there
    // is none or it exits while being opened.
    static Result<Target> open(pid_t pid);
    // Adopts a pidfd (e.g. one a client passed); the pid is the one in
    // oohd's PID namespace.
    static Result<Target> fromPidfd(UniqueFD pidfd);
    // Adopts a pidfd whose process had `pid` (in oohd's PID namespace) when
    // the pidfd was made. Refused with ESRCH if that process has exited by
    // the time its /proc directory is open (the pid may name another).
    static Result<Target> adopt(UniqueFD pidfd, pid_t pid);

    pid_t pid() const { return h_ ? h_->pid : -1; }
    int pidfd() const { return h_ ? h_->pidfd.get() : -1; }
    // The O_PATH fd of /proc/PID, for openat().
    int procDir() const { return h_ ? h_->dir.get() : -1; }
    // Start time in clock ticks since boot (field 22 of /proc/PID/stat).
    uint64_t startTime() const { return h_ ? h_->start_time : 0; }
    // False once the process has exited (pidfd readable).
    bool isAlive() const;

    // Opens /proc/PID/<name> ("maps", "task/TID/status", ...) through the
    // directory fd. ESRCH ("process N exited") once the process is gone,
    // even a zombie whose files still open; the oohd-side cause when oohd
    // is out of fds.
    Result<UniqueFD> openFile(const std::string &name, int flags) const;
    // The whole text of /proc/PID/<name>.
    Result<std::string> readFile(const std::string &name) const;
    // /proc/PID/maps, parsed; ESRCH once the process is gone (an exited
    // process's maps read empty, which must not pass for "no mappings"),
    // EIO if it reads empty all the same.
    Result<std::vector<MapEntry>> readMaps() const;

    // Thread IDs, from /proc/PID/task; empty once the process is gone.
    std::vector<pid_t> threads() const;
    // How many threads the kernel counts ("Threads:" of /proc/PID/status);
    // 0 if it cannot be read.
    size_t threadCount() const;
    // Whether tid is one of its threads (listed in /proc/PID/task).
    bool hasThread(pid_t tid) const;
    // State letter of the thread ('R', 'S', 'D', 't', ...), or '?'.
    char threadState(pid_t tid) const;
    // The number after `key` ("TracerPid:", "Seccomp:") in the thread's
    // status file; 0 if absent.
    long threadStatusNumber(pid_t tid, std::string_view key) const;

    // May this client track the process? Root may without a proof. Anyone
    // else must pass `proof`: /proc/PID/mem of this process, opened itself
    // from the same /proc as oohd's, which the kernel lets it open only if
    // it may ptrace-attach the process (PTRACE_MODE_ATTACH_FSCREDS: ids,
    // dumpability, capabilities, Yama, LSMs). Fails with EPERM and a
    // message saying what to pass.
    Result<void> checkAccessProof(const PeerCredentials &peer, const UniqueFD &proof) const;

private:
    // Immutable once opened and shared by copies: a tracker keeps a copy,
    // so that its process stays pinned without more fds, and a session
    // may move its own.
    struct Handles {
        pid_t pid = -1;
        uint64_t start_time = 0;
        UniqueFD pidfd;
        UniqueFD dir;
    };
    explicit Target(std::shared_ptr<const Handles> h) : h_(std::move(h)) {}
    Error exited(const char *when) const;

    std::shared_ptr<const Handles> h_;
};

// The error for an fd oohd could not get while doing `what`. Running out of
// fds is oohd's trouble, not the target's: the message says so.
Error openFailure(int err, const std::string &what);

} // namespace ooh

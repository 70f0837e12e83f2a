// SPDX-License-Identifier: Apache-2.0
// RemoteSyscalls: runs system calls inside another process through ptrace,
// without writing to its memory, and leaves it exactly as it was.
//
// One thread of the target is stopped (oohd/target/thread_stop.h) with all
// its signals blocked (PTRACE_SETSIGMASK) so that nothing is delivered with
// borrowed registers. Each syscall runs from an existing syscall
// instruction (found in the vDSO) and the thread is stopped at syscall exit.
// On release the saved registers and mask are put back and the thread is
// detached from a PTRACE_INTERRUPT stop, so that the kernel itself applies
// its usual syscall-restart logic to a syscall the thread was sleeping in.
// A thread under seccomp has it suspended (PTRACE_O_SUSPEND_SECCOMP) from
// its stop until release, so that strict mode or a filter does not kill it
// for our syscalls; without the privilege for that, attach() refuses.
#pragma once

#include "arch.h"
#include "result.h"
#include "target.h"
#include "thread_stop.h"

#include <chrono>
#include <cstdint>
#include <sys/types.h>

namespace ooh {

class RemoteSyscalls {
public:
    // Stops one thread of `target`, waiting at most `timeout` for it.
    // Fails with EBUSY if the target is already traced (naming the tracer),
    // ESRCH if it exits, ETIMEDOUT if no thread stops in time (saying why),
    // and EPERM, before touching it, if a thread runs under seccomp and
    // oohd may not suspend it (no CAP_SYS_ADMIN in the initial user
    // namespace). Each syscall's stops are then waited for as long.
    static Result<RemoteSyscalls> attach(const Target &target,
                                         std::chrono::milliseconds timeout = kDefaultStopTimeout);

    RemoteSyscalls(RemoteSyscalls &&other) noexcept;
    RemoteSyscalls &operator=(RemoteSyscalls &&) = delete;
    RemoteSyscalls(const RemoteSyscalls &) = delete;
    ~RemoteSyscalls();

    // Runs syscall `nr`; the value is the syscall's return (which may be a
    // negative errno: that is the target's answer, not an injection error).
    Result<long> call(long nr, uint64_t a0 = 0, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0,
                      uint64_t a4 = 0, uint64_t a5 = 0);

    // Restores the thread and detaches. Called by the destructor if needed.
    Result<void> release();

    pid_t tid() const { return thread_.tid(); }

private:
    RemoteSyscalls(Tracee thread, uint64_t insn_addr, std::chrono::milliseconds timeout)
        : thread_(std::move(thread)), insn_addr_(insn_addr), timeout_(timeout)
    {
    }
    Result<void> resumeUntilSyscallStop(const char *what);
    Result<void> settlePendingSyscall(const Target &target);

    Tracee thread_;
    uint64_t insn_addr_ = 0;
    std::chrono::milliseconds timeout_;
    arch::Regs saved_regs_{};
    bool released_ = false;
    bool injected_ = false; // regs were changed: restore before detach
};

// Finds the address of a syscall instruction in one of the target's
// executable mappings, preferring the vDSO; ENOEXEC if none.
Result<uint64_t> findSyscallInstruction(const Target &target);

} // namespace ooh

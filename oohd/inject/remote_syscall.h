// SPDX-License-Identifier: Apache-2.0
// RemoteSyscalls: runs system calls inside another process through ptrace,
// without writing to its memory, and leaves it exactly as it was.
//
// One thread of the target is seized (PTRACE_SEIZE + PTRACE_INTERRUPT) with
// all its signals blocked (PTRACE_SETSIGMASK) so that nothing is delivered
// with borrowed registers. Each syscall runs from an existing syscall
// instruction (found in the vDSO) and the thread is stopped at syscall exit.
// On release the saved registers and mask are put back and the thread is
// detached from a PTRACE_INTERRUPT stop, so that the kernel itself applies
// its usual syscall-restart logic to a syscall the thread was sleeping in.
// A thread under seccomp has it suspended (PTRACE_O_SUSPEND_SECCOMP) from
// its stop until release, so that strict mode or a filter does not kill it
// for our syscalls; without the privilege for that, attach() refuses.
#pragma once

#include "arch.h"
#include "target.h"
#include "result.h"

#include <cstdint>
#include <sys/types.h>

namespace ooh {

class RemoteSyscalls {
public:
    // Seizes and stops one thread of `target`. Fails with EBUSY if the
    // target is already traced (naming the tracer), ESRCH if it exits, and
    // EPERM, before touching it, if a thread runs under seccomp and oohd may
    // not suspend it (no CAP_SYS_ADMIN in the initial user namespace).
    static Result<RemoteSyscalls> attach(const Target &target);

    RemoteSyscalls(RemoteSyscalls &&other) noexcept;
    RemoteSyscalls &operator=(RemoteSyscalls &&) = delete;
    RemoteSyscalls(const RemoteSyscalls &) = delete;
    ~RemoteSyscalls();

    // Runs syscall `nr`; the value is the syscall's return (which may be a
    // negative errno: that is the target's answer, not an injection error).
    Result<long> call(long nr, uint64_t a0 = 0, uint64_t a1 = 0, uint64_t a2 = 0,
                      uint64_t a3 = 0, uint64_t a4 = 0, uint64_t a5 = 0);

    // Restores the thread and detaches. Called by the destructor if needed.
    Result<void> release();

    pid_t tid() const { return tid_; }

private:
    RemoteSyscalls() = default;
    Result<int> waitStop(const char *what);
    Result<void> resumeUntilSyscallStop(const char *what);

    pid_t tid_ = -1;
    uint64_t insn_addr_ = 0;
    arch::Regs saved_regs_{};
    uint64_t saved_sigmask_ = 0;
    bool attached_ = false;
    bool injected_ = false;  // regs were changed: restore before detach
    bool mask_set_ = false;  // the signal mask is ours: restore before detach
    bool running_ = false;   // resumed and not seen stopped since
    bool seccomp_suspended_ = false;  // PTRACE_O_SUSPEND_SECCOMP is set
};

// Detaches threads that did not stop in time (see RemoteSyscalls) once they
// have; returns how many are still waited for. Must be called by the thread
// that attached them (the daemon's event loop) from time to time.
size_t reapStrayTracees();

// Finds the address of a syscall instruction in one of the target's
// executable mappings, preferring the vDSO; ENOEXEC if none.
Result<uint64_t> findSyscallInstruction(const Target &target);

} // namespace ooh

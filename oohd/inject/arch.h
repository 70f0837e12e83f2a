// SPDX-License-Identifier: Apache-2.0
// The architecture-specific part of syscall injection, kept to a few
// functions: oohd/inject/arch_<arch>.cpp, one per architecture.
#pragma once

#include <cstddef>
#include <cstdint>
#include <linux/types.h>
#include <sys/types.h>
#include <sys/user.h>
#if defined(__aarch64__)
#include <asm/ptrace.h>
#endif

namespace ooh::arch {

#if defined(__x86_64__)
using Regs = struct user_regs_struct;
#elif defined(__aarch64__)
using Regs = struct user_pt_regs;
#else
#error "syscall injection is implemented for x86_64 and aarch64 (add oohd/inject/arch_<arch>.cpp)"
#endif

// The byte pattern of the syscall instruction, searched for in the target's
// executable mappings (its vDSO first) at multiples of kInsnAlign: the
// injected syscall executes it and the thread is stopped at syscall exit,
// before it runs anything after it.
extern const uint8_t kSyscallInsn[];
extern const size_t kSyscallInsnLen;
extern const size_t kInsnAlign;

// Whether the kernel rewinds an interrupted syscall for restart *before* a
// signal-delivery or interrupt stop (arm64: the program counter is back on
// the syscall instruction and the first argument restored when the tracer
// sees the stop) rather than after it (x86_64). Then the one step it still
// takes after the stop (the switch to restart_syscall for nanosleep, poll
// with a timeout, futex waits) is lost if the tracer moves the program
// counter: the injection lets the thread enter its pending syscall first to
// see which one the kernel chose (see RemoteSyscalls::attach).
extern const bool kRestartBeforeStop;

// Sets up `regs` to execute syscall `nr` with `args` at `insn_addr`. The
// registers the syscall ABI does not use keep their values.
void setupSyscall(Regs &regs, uint64_t insn_addr, long nr, const uint64_t args[6]);
// The syscall number the thread is entering (at a syscall-enter stop).
long syscallNumber(const Regs &regs);
// Makes `regs` (saved at a stop on a syscall instruction) execute syscall
// `nr` there instead.
void setSyscallNumber(Regs &regs, long nr);
// The return value at a syscall-exit stop (negative errno on failure).
long syscallResult(const Regs &regs);
// The program counter.
uint64_t programCounter(const Regs &regs);
// At a syscall stop of thread `tid` whose registers are `regs` (as they
// will be written back): tells the kernel that no syscall is in progress,
// so that it neither runs the syscall (at entry) nor restarts anything when
// the thread leaves the stop (at exit). Returns 0 or -errno.
int forgetSyscall(pid_t tid, Regs &regs);

} // namespace ooh::arch

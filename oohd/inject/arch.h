// SPDX-License-Identifier: Apache-2.0
// The architecture-specific part of syscall injection, kept to a few
// functions so that another architecture (aarch64) is one more file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <linux/types.h>
#include <sys/user.h>

namespace ooh::arch {

#if defined(__x86_64__)
using Regs = struct user_regs_struct;
#else
#error "syscall injection is implemented for x86_64 only (add oohd/inject/arch_<arch>.cpp)"
#endif

// The byte pattern of the syscall instruction, searched for in the target's
// executable mappings (its vDSO first): the injected syscall executes it and
// the thread is stopped at syscall exit, before it runs anything after it.
extern const uint8_t kSyscallInsn[];
extern const size_t kSyscallInsnLen;

// Sets up `regs` to execute syscall `nr` with `args` at `insn_addr`, with no
// syscall-restart state left behind.
void setupSyscall(Regs &regs, uint64_t insn_addr, long nr, const uint64_t args[6]);
// The syscall number the thread is entering (at a syscall-enter stop).
long syscallNumber(const Regs &regs);
// The return value at a syscall-exit stop (negative errno on failure).
long syscallResult(const Regs &regs);

} // namespace ooh::arch

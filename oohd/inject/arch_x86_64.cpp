// SPDX-License-Identifier: Apache-2.0
// x86_64 part of syscall injection: register layout of the syscall ABI.
#include "arch.h"

namespace ooh::arch {

const uint8_t kSyscallInsn[] = {0x0f, 0x05};
const size_t kSyscallInsnLen = sizeof(kSyscallInsn);
const size_t kInsnAlign = 1;
// arch_do_signal_or_restart() rewinds after get_signal(): the registers at
// an interrupt stop still carry -ERESTART* in rax and the number in orig_rax.
const bool kRestartBeforeStop = false;

void setupSyscall(Regs &regs, uint64_t insn_addr, long nr, const uint64_t args[6])
{
    regs.rip = insn_addr;
    regs.rax = static_cast<uint64_t>(nr);
    // orig_rax = -1: the kernel must not treat the state as an interrupted
    // syscall to restart when the thread leaves its current stop.
    regs.orig_rax = static_cast<uint64_t>(-1);
    regs.rdi = args[0];
    regs.rsi = args[1];
    regs.rdx = args[2];
    regs.r10 = args[3];
    regs.r8 = args[4];
    regs.r9 = args[5];
}

long syscallNumber(const Regs &regs) { return static_cast<long>(regs.orig_rax); }
void setSyscallNumber(Regs &regs, long nr) { regs.rax = static_cast<uint64_t>(nr); }
long syscallResult(const Regs &regs) { return static_cast<long>(regs.rax); }
uint64_t programCounter(const Regs &regs) { return regs.rip; }

int forgetSyscall(pid_t, Regs &regs)
{
    // Written back with the registers.
    regs.orig_rax = static_cast<uint64_t>(-1);
    return 0;
}

} // namespace ooh::arch

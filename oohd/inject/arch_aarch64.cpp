// SPDX-License-Identifier: Apache-2.0
// aarch64 part of syscall injection: the syscall ABI (number in x8,
// arguments in x0-x5, `svc #0`) and the kernel's syscall number, which
// lives outside the general registers (NT_ARM_SYSTEM_CALL).
#include "arch.h"

#include <cerrno>
#include <elf.h>
#include <sys/ptrace.h>
#include <sys/uio.h>

namespace ooh::arch {

// svc #0 (0xd4000001), little-endian.
const uint8_t kSyscallInsn[] = {0x01, 0x00, 0x00, 0xd4};
const size_t kSyscallInsnLen = sizeof(kSyscallInsn);
const size_t kInsnAlign = 4;
// arch/arm64/kernel/signal.c do_signal(): pc -= 4 and x0 = orig_x0 happen
// before get_signal(); x8 = __NR_restart_syscall only after it, and only if
// the pc was left alone.
const bool kRestartBeforeStop = true;

void setupSyscall(Regs &regs, uint64_t insn_addr, long nr, const uint64_t args[6])
{
    regs.pc = insn_addr;
    regs.regs[8] = static_cast<uint64_t>(nr);
    for (int i = 0; i < 6; ++i)
        regs.regs[i] = args[i];
    // x7 is left as it is: at a syscall stop the kernel shows the tracer
    // 0 or 1 there (entry or exit) and discards what the tracer writes.
}

long syscallNumber(const Regs &regs) { return static_cast<long>(regs.regs[8]); }
void setSyscallNumber(Regs &regs, long nr) { regs.regs[8] = static_cast<uint64_t>(nr); }
long syscallResult(const Regs &regs) { return static_cast<long>(regs.regs[0]); }
uint64_t programCounter(const Regs &regs) { return regs.pc; }

int forgetSyscall(pid_t tid, Regs &)
{
    // pt_regs->syscallno = NO_SYSCALL: skipped at entry; at exit, the
    // signal path's in_syscall() is false, so it leaves x0 and pc alone.
    int nr = -1;
    struct iovec iov = {&nr, sizeof(nr)};
    if (::ptrace(PTRACE_SETREGSET, tid, NT_ARM_SYSTEM_CALL, &iov) < 0)
        return -errno;
    return 0;
}

} // namespace ooh::arch

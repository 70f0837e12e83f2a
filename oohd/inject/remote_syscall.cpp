// SPDX-License-Identifier: Apache-2.0
// Implementation of oohd/inject/remote_syscall.h.
#include "remote_syscall.h"

#include "log.h"
#include "proc_maps.h"

#include <algorithm>
#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace ooh {

namespace {

constexpr const char *kLog = "inject";
// Stops we tolerate (signal deliveries, group stops) before giving up.
constexpr int kMaxForeignStops = 64;

Result<void> getRegs(pid_t tid, arch::Regs *regs)
{
    struct iovec iov = {regs, sizeof(*regs)};
    if (::ptrace(PTRACE_GETREGSET, tid, NT_PRSTATUS, &iov) < 0)
        return Error::fromErrno(errno, "PTRACE_GETREGSET on thread " + std::to_string(tid));
    return {};
}

Result<void> setRegs(pid_t tid, const arch::Regs &regs)
{
    struct iovec iov = {const_cast<arch::Regs *>(&regs), sizeof(regs)};
    if (::ptrace(PTRACE_SETREGSET, tid, NT_PRSTATUS, &iov) < 0)
        return Error::fromErrno(errno, "PTRACE_SETREGSET on thread " + std::to_string(tid));
    return {};
}

bool isEventStop(int status) { return (status >> 16) == PTRACE_EVENT_STOP; }
bool isSyscallStop(int status) { return WSTOPSIG(status) == (SIGTRAP | 0x80); }

} // namespace

Result<uint64_t> findSyscallInstruction(const Target &target)
{
    auto maps = target.readMaps();
    if (!maps)
        return maps.takeError();
    auto mem = target.openFile("mem", O_RDONLY);
    if (!mem)
        return mem.takeError();
    std::stable_sort(maps->begin(), maps->end(), [](const MapEntry &a, const MapEntry &b) {
        return (a.path == "[vdso]") > (b.path == "[vdso]");
    });
    std::vector<uint8_t> buf;
    for (const auto &m : *maps) {
        if (!m.exec || !m.read || m.path == "[vsyscall]")
            continue;
        size_t len = std::min<uint64_t>(m.end - m.start, 1 << 20);
        buf.resize(len);
        ssize_t n = ::pread(mem->get(), buf.data(), len, static_cast<off_t>(m.start));
        if (n <= 0)
            continue;
        // Mappings start on a page: aligned in the buffer is aligned in memory.
        for (size_t off = 0; off + arch::kSyscallInsnLen <= static_cast<size_t>(n);
             off += arch::kInsnAlign) {
            if (std::equal(arch::kSyscallInsn, arch::kSyscallInsn + arch::kSyscallInsnLen,
                           buf.begin() + static_cast<ptrdiff_t>(off)))
                return m.start + off;
        }
    }
    return makeError(ENOEXEC, "no syscall instruction found in the executable mappings of pid " +
                                  std::to_string(target.pid()));
}

Result<RemoteSyscalls> RemoteSyscalls::attach(const Target &target,
                                              std::chrono::milliseconds timeout)
{
    auto insn = findSyscallInstruction(target);
    if (!insn)
        return insn.takeError();
    StopOptions options;
    options.timeout = timeout;
    options.suspend_seccomp = true;
    auto thread = stopOneThread(target, options);
    if (!thread)
        return thread.takeError();
    RemoteSyscalls rs(std::move(*thread), *insn, timeout);
    OOH_TRY(getRegs(rs.tid(), &rs.saved_regs_));
    OOH_TRY(rs.thread_.blockSignals());
    if (arch::kRestartBeforeStop)
        OOH_TRY(rs.settlePendingSyscall(target));
    return Result<RemoteSyscalls>(std::move(rs));
}

Result<void> RemoteSyscalls::settlePendingSyscall(const Target &target)
{
    // Stopped on a syscall instruction: an interrupted syscall the kernel
    // has rewound for restart (or one the thread was about to make). The
    // kernel picks the number it restarts with (restart_syscall after a
    // timed sleep) only as the thread leaves this stop with its program
    // counter unmoved, so let it go as far as the syscall's entry and look.
    const uint64_t pc = arch::programCounter(saved_regs_);
    auto mem = target.openFile("mem", O_RDONLY);
    if (!mem)
        return mem.takeError();
    uint8_t insn[8];
    if (::pread(mem->get(), insn, arch::kSyscallInsnLen, static_cast<off_t>(pc)) !=
            static_cast<ssize_t>(arch::kSyscallInsnLen) ||
        !std::equal(arch::kSyscallInsn, arch::kSyscallInsn + arch::kSyscallInsnLen, insn))
        return {};
    // From here the thread's registers must be put back before it goes.
    injected_ = true;
    OOH_TRY(resumeUntilSyscallStop("its pending syscall's entry"));
    arch::Regs regs;
    OOH_TRY(getRegs(tid(), &regs));
    if (arch::programCounter(regs) != pc + arch::kSyscallInsnLen)
        return makeError(EPROTO, "thread " + std::to_string(tid()) +
                                     " entered a syscall away from the one it was stopped on");
    const long nr = arch::syscallNumber(regs);
    // Skipped: the thread runs it itself once released, with this number.
    if (int e = arch::forgetSyscall(tid(), regs); e < 0)
        return Error::fromErrno(-e,
                                "skipping the pending syscall of thread " + std::to_string(tid()));
    OOH_TRY(setRegs(tid(), regs));
    OOH_TRY(resumeUntilSyscallStop("its skipped syscall's exit"));
    arch::setSyscallNumber(saved_regs_, nr);
    OOH_LOG(kLog, Debug) << "thread " << tid() << " resumes syscall " << nr << " on release";
    return {};
}

RemoteSyscalls::RemoteSyscalls(RemoteSyscalls &&o) noexcept
    : thread_(std::move(o.thread_)), insn_addr_(o.insn_addr_), timeout_(o.timeout_),
      saved_regs_(o.saved_regs_), released_(std::exchange(o.released_, true)),
      injected_(o.injected_)
{
}

RemoteSyscalls::~RemoteSyscalls()
{
    if (released_)
        return;
    auto r = release();
    if (!r)
        OOH_LOG(kLog, Error) << "releasing thread " << thread_.tid() << ": " << r.error().message;
}

Result<void> RemoteSyscalls::resumeUntilSyscallStop(const char *what)
{
    for (int i = 0; i < kMaxForeignStops; ++i) {
        OOH_TRY(thread_.resume(PTRACE_SYSCALL));
        auto st = thread_.waitStop(StopClock::now() + timeout_, what);
        if (!st)
            return st.takeError();
        if (isSyscallStop(*st))
            return {};
        // All maskable signals are blocked; a group stop (SIGSTOP from
        // elsewhere) is reinstated by the kernel when we detach.
    }
    return makeError(EAGAIN, std::string("thread kept stopping before ") + what);
}

Result<long> RemoteSyscalls::call(long nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
                                  uint64_t a4, uint64_t a5)
{
    if (released_ || !thread_.stopped())
        return makeError(ESRCH, "thread is not attached");
    const uint64_t args[6] = {a0, a1, a2, a3, a4, a5};
    arch::Regs regs = saved_regs_;
    arch::setupSyscall(regs, insn_addr_, nr, args);
    OOH_TRY(setRegs(tid(), regs));
    injected_ = true;

    OOH_TRY(resumeUntilSyscallStop("syscall entry"));
    OOH_TRY(getRegs(tid(), &regs));
    if (arch::syscallNumber(regs) != nr)
        return makeError(EPROTO, "injected syscall " + std::to_string(nr) + " entered as " +
                                     std::to_string(arch::syscallNumber(regs)));
    OOH_TRY(resumeUntilSyscallStop("syscall exit"));
    OOH_TRY(getRegs(tid(), &regs));
    return arch::syscallResult(regs);
}

Result<void> RemoteSyscalls::release()
{
    if (released_)
        return {};
    released_ = true;
    // Not stopped: running (handed over until it stops) or exited.
    if (!thread_.stopped())
        return thread_.release();
    // Seccomp applies again before the thread leaves its stop.
    thread_.resumeSeccomp();
    if (injected_) {
        // Back to the state of the interrupt stop: registers, then leave the
        // syscall-exit stop through a fresh interrupt stop, so that the
        // kernel's signal path runs and restarts a sleeping syscall exactly
        // as it would have without us.
        OOH_TRY(setRegs(tid(), saved_regs_));
        if (arch::kRestartBeforeStop) {
            // The saved registers are already rewound for a restart: the
            // kernel must not take them for an interrupted syscall again.
            arch::Regs regs = saved_regs_;
            if (int e = arch::forgetSyscall(tid(), regs); e < 0)
                return Error::fromErrno(-e, "clearing the syscall state of thread " +
                                                std::to_string(tid()));
        }
        OOH_TRY(thread_.interrupt());
        bool stopped = false;
        for (int i = 0; i < kMaxForeignStops && !stopped; ++i) {
            OOH_TRY(thread_.resume(PTRACE_CONT));
            auto st = thread_.waitStop(StopClock::now() + timeout_, "the final interrupt stop");
            if (!st)
                return st.takeError();
            stopped = isEventStop(*st);
        }
        if (!stopped)
            return makeError(EAGAIN, "thread did not reach its final interrupt stop");
        // The regs must still be ours: nothing ran in user space since.
        OOH_TRY(setRegs(tid(), saved_regs_));
        injected_ = false;
    }
    // Restores the signal mask and detaches.
    return thread_.release();
}

} // namespace ooh

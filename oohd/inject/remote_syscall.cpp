// SPDX-License-Identifier: Apache-2.0
// Implementation of oohd/inject/remote_syscall.h.
#include "remote_syscall.h"

#include "log.h"
#include "proc_maps.h"
#include "proc_task.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <cstring>
#include <elf.h>
#include <fcntl.h>
#include <fstream>
#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace ooh {

namespace {

constexpr const char *kLog = "inject";
// Stops we tolerate (signal deliveries, group stops) before giving up.
constexpr int kMaxForeignStops = 64;
// How long a thread may take to reach a ptrace stop. A thread in an
// uninterruptible wait (vfork() waiting for its child, a frozen cgroup)
// never does; it is then left to reapStrayTracees().
constexpr auto kStopTimeout = std::chrono::seconds(2);
// Threads of one process tried before giving up.
constexpr size_t kMaxThreadsTried = 3;

// Threads we are still attached to but could not stop in time: detached
// (with their signal mask restored) as soon as they stop.
struct StrayTracee {
    pid_t tid;
    bool restore_mask;
    uint64_t sigmask;
};
std::vector<StrayTracee> &strays()
{
    static std::vector<StrayTracee> list;
    return list;
}

int tracerOf(pid_t tid)
{
    std::ifstream in("/proc/" + std::to_string(tid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("TracerPid:", 0) == 0)
            return std::atoi(line.c_str() + 10);
    return 0;
}

std::vector<pid_t> threadsOf(pid_t pid)
{
    // The leader first: it is the thread whose stop is least surprising.
    std::vector<pid_t> tids{pid};
    for (pid_t tid : listThreads(pid))
        if (tid != pid)
            tids.push_back(tid);
    // Threads in uninterruptible sleep ('D': vfork(), I/O) cannot stop for
    // us soon: try them last.
    std::stable_partition(tids.begin(), tids.end(),
                          [pid](pid_t tid) { return threadState(pid, tid) != 'D'; });
    if (tids.size() > kMaxThreadsTried)
        tids.resize(kMaxThreadsTried);
    return tids;
}

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

// The Seccomp: field of /proc/PID/task/TID/status: 0 (none; also when the
// kernel has no seccomp and the field is missing), 1 (strict), 2 (filter).
int seccompModeOf(pid_t pid, pid_t tid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("Seccomp:", 0) == 0)
            return std::atoi(line.c_str() + 8);
    return 0;
}

// The inode of the initial user namespace (PROC_USER_INIT_INO), fixed by
// the kernel.
constexpr ino_t kInitUserNsIno = 0xEFFFFFFDU;

// Whether the kernel will let us set PTRACE_O_SUSPEND_SECCOMP: it wants
// CAP_SYS_ADMIN in the initial user namespace and the tracer itself outside
// seccomp. Only asked to refuse without touching the target; the kernel's
// answer to PTRACE_SETOPTIONS stays the final word. Empty if so, else why not.
std::string whyNoSeccompSuspension()
{
    struct stat ns {};
    if (::stat("/proc/self/ns/user", &ns) == 0 && ns.st_ino != kInitUserNsIno)
        return "oohd runs in a user namespace other than the initial one";
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (::syscall(SYS_capget, &hdr, data) == 0 &&
        !(data[CAP_TO_INDEX(CAP_SYS_ADMIN)].effective & CAP_TO_MASK(CAP_SYS_ADMIN)))
        return "oohd lacks CAP_SYS_ADMIN";
    if (::prctl(PR_GET_SECCOMP) > 0)
        return "oohd itself runs under seccomp";
    return {};
}

const char *seccompModeName(int mode)
{
    return mode == 1 ? "seccomp strict mode, which kills it on any syscall but read, write, "
                       "exit and sigreturn"
                     : "a seccomp filter, which may kill it or fail the injected syscalls";
}

// The error for a process oohd cannot inject into without risking its life.
Error seccompRefusal(pid_t pid, pid_t tid, int mode, const std::string &why)
{
    return makeError(EPERM, "thread " + std::to_string(tid) + " of pid " + std::to_string(pid) +
                                " runs under " + seccompModeName(mode) +
                                "; oohd cannot suspend seccomp while it injects its syscalls "
                                "(PTRACE_O_SUSPEND_SECCOMP: " + why +
                                "), so it leaves the process alone. Run oohd as root (with "
                                "CAP_SYS_ADMIN, outside seccomp and user namespaces) to track it");
}

bool isEventStop(int status) { return (status >> 16) == PTRACE_EVENT_STOP; }
bool isSyscallStop(int status) { return WSTOPSIG(status) == (SIGTRAP | 0x80); }

} // namespace

size_t reapStrayTracees()
{
    auto &list = strays();
    std::erase_if(list, [](const StrayTracee &s) {
        int status = 0;
        pid_t r = ::waitpid(s.tid, &status, __WALL | WNOHANG);
        if (r == 0)
            return false;  // still running
        if (r < 0 || WIFEXITED(status) || WIFSIGNALED(status))
            return true;
        if (s.restore_mask)
            ::ptrace(PTRACE_SETSIGMASK, s.tid, sizeof(uint64_t), &s.sigmask);
        // A signal-delivery stop gets its signal back; any other stop none.
        bool event = (status >> 16) != 0 || (WSTOPSIG(status) & 0x80);
        ::ptrace(PTRACE_DETACH, s.tid, nullptr, event ? 0 : WSTOPSIG(status));
        OOH_LOG(kLog, Info) << "detached thread " << s.tid << " after its late stop";
        return true;
    });
    return list.size();
}

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
        auto end = buf.begin() + n;
        auto it = std::search(buf.begin(), end, arch::kSyscallInsn,
                              arch::kSyscallInsn + arch::kSyscallInsnLen);
        if (it != end)
            return m.start + static_cast<uint64_t>(it - buf.begin());
    }
    return makeError(ENOEXEC, "no syscall instruction found in the executable mappings of pid " +
                                  std::to_string(target.pid()));
}

Result<RemoteSyscalls> RemoteSyscalls::attach(const Target &target)
{
    auto insn = findSyscallInstruction(target);
    if (!insn)
        return insn.takeError();

    // Under seccomp (strict mode, or a filter that may kill on userfaultfd)
    // the injected syscalls run with seccomp suspended for the one thread
    // that executes them. Threads can differ; if any of them needs the
    // suspension and the kernel will not grant it, refuse before the
    // process is touched.
    if (std::string why = whyNoSeccompSuspension(); !why.empty())
        for (pid_t tid : listThreads(target.pid()))
            if (int mode = seccompModeOf(target.pid(), tid); mode != 0)
                return seccompRefusal(target.pid(), tid, mode, why);

    Error last = makeError(ESRCH, "process " + std::to_string(target.pid()) + " has no threads");
    for (pid_t tid : threadsOf(target.pid())) {
        if (::ptrace(PTRACE_SEIZE, tid, nullptr, PTRACE_O_TRACESYSGOOD) < 0) {
            int err = errno;
            if (err == EPERM) {
                int tracer = tracerOf(tid);
                if (tracer > 0)
                    return makeError(EBUSY, "pid " + std::to_string(target.pid()) +
                                                " is already traced by pid " +
                                                std::to_string(tracer) +
                                                " (a debugger or another checkpointer); detach "
                                                "it first");
            }
            last = Error::fromErrno(err, "PTRACE_SEIZE of thread " + std::to_string(tid));
            if (err == ESRCH)
                continue;  // that thread is exiting: try another
            return last;
        }
        RemoteSyscalls rs;
        rs.tid_ = tid;
        rs.attached_ = true;
        rs.running_ = true;  // seized, not stopped yet
        rs.insn_addr_ = *insn;
        if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) < 0) {
            last = Error::fromErrno(errno, "PTRACE_INTERRUPT of thread " + std::to_string(tid));
            continue;  // the destructor detaches
        }
        // Let signal deliveries that race with the interrupt through, with
        // their signal, until the interrupt's own stop arrives.
        bool stopped = false;
        for (int i = 0; i < kMaxForeignStops; ++i) {
            auto st = rs.waitStop("the interrupt stop");
            if (!st) {
                last = st.takeError();
                if (last.code == ETIMEDOUT)
                    last.message = "thread " + std::to_string(tid) + " of pid " +
                                   std::to_string(target.pid()) +
                                   " did not stop within 2 s (uninterruptible wait, e.g. vfork() "
                                   "waiting for its child, or a frozen cgroup); try again later";
                break;
            }
            if (isEventStop(*st)) {
                stopped = true;
                break;
            }
            ::ptrace(PTRACE_CONT, tid, nullptr, WSTOPSIG(*st));
        }
        if (!stopped)
            continue;
        // Suspended only now that the thread is stopped, so that its own
        // code never runs unfiltered; asked for the thread as it is now (it
        // may have entered seccomp since the check above).
        if (int mode = seccompModeOf(target.pid(), tid); mode != 0) {
            if (::ptrace(PTRACE_SETOPTIONS, tid, nullptr,
                         PTRACE_O_TRACESYSGOOD | PTRACE_O_SUSPEND_SECCOMP) < 0)
                return seccompRefusal(target.pid(), tid, mode, std::strerror(errno));
            rs.seccomp_suspended_ = true;
            OOH_LOG(kLog, Debug) << "seccomp of thread " << tid << " suspended while injecting";
        }
        OOH_TRY(getRegs(tid, &rs.saved_regs_));
        if (::ptrace(PTRACE_GETSIGMASK, tid, sizeof(uint64_t), &rs.saved_sigmask_) < 0)
            return Error::fromErrno(errno, "PTRACE_GETSIGMASK");
        uint64_t all = ~0ULL;
        if (::ptrace(PTRACE_SETSIGMASK, tid, sizeof(uint64_t), &all) < 0)
            return Error::fromErrno(errno, "PTRACE_SETSIGMASK");
        rs.mask_set_ = true;
        return rs;
    }
    return last;
}

RemoteSyscalls::RemoteSyscalls(RemoteSyscalls &&o) noexcept
    : tid_(o.tid_), insn_addr_(o.insn_addr_), saved_regs_(o.saved_regs_),
      saved_sigmask_(o.saved_sigmask_), attached_(std::exchange(o.attached_, false)),
      injected_(o.injected_), mask_set_(o.mask_set_), running_(o.running_),
      seccomp_suspended_(o.seccomp_suspended_)
{
}

RemoteSyscalls::~RemoteSyscalls()
{
    if (!attached_)
        return;
    auto r = release();
    if (!r)
        OOH_LOG(kLog, Error) << "releasing thread " << tid_ << ": " << r.error().message;
}

Result<int> RemoteSyscalls::waitStop(const char *what)
{
    int status = 0;
    running_ = true;
    auto deadline = std::chrono::steady_clock::now() + kStopTimeout;
    auto pause = std::chrono::microseconds(20);
    for (;;) {
        pid_t r = ::waitpid(tid_, &status, __WALL | WNOHANG);
        if (r == tid_)
            break;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return Error::fromErrno(errno, std::string("waiting for ") + what + " of thread " +
                                               std::to_string(tid_));
        if (std::chrono::steady_clock::now() > deadline)
            return makeError(ETIMEDOUT, std::string("thread ") + std::to_string(tid_) +
                                            " did not reach " + what + " in time");
        std::this_thread::sleep_for(pause);
        pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(5));
    }
    running_ = false;
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
        attached_ = false;
        return makeError(ESRCH, "thread " + std::to_string(tid_) + " exited while waiting for " +
                                    what);
    }
    return status;
}

Result<void> RemoteSyscalls::resumeUntilSyscallStop(const char *what)
{
    for (int i = 0; i < kMaxForeignStops; ++i) {
        if (::ptrace(PTRACE_SYSCALL, tid_, nullptr, nullptr) < 0)
            return Error::fromErrno(errno, "PTRACE_SYSCALL");
        auto st = waitStop(what);
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
    if (!attached_)
        return makeError(ESRCH, "thread is not attached");
    const uint64_t args[6] = {a0, a1, a2, a3, a4, a5};
    arch::Regs regs = saved_regs_;
    arch::setupSyscall(regs, insn_addr_, nr, args);
    OOH_TRY(setRegs(tid_, regs));
    injected_ = true;

    OOH_TRY(resumeUntilSyscallStop("syscall entry"));
    OOH_TRY(getRegs(tid_, &regs));
    if (arch::syscallNumber(regs) != nr)
        return makeError(EPROTO, "injected syscall " + std::to_string(nr) + " entered as " +
                                     std::to_string(arch::syscallNumber(regs)));
    OOH_TRY(resumeUntilSyscallStop("syscall exit"));
    OOH_TRY(getRegs(tid_, &regs));
    return arch::syscallResult(regs);
}

Result<void> RemoteSyscalls::release()
{
    if (!attached_)
        return {};
    if (running_) {
        // Not stopped, so it cannot be detached now: hand it over.
        strays().push_back({tid_, mask_set_, saved_sigmask_});
        attached_ = false;
        OOH_LOG(kLog, Warning) << "thread " << tid_
                               << " did not stop; it is detached once it does";
        return {};
    }
    if (seccomp_suspended_) {
        // Seccomp applies again before the thread leaves its stop. Should
        // this fail, the detach below still lifts the suspension, before
        // the thread runs any code of its own: go on restoring it.
        if (::ptrace(PTRACE_SETOPTIONS, tid_, nullptr, PTRACE_O_TRACESYSGOOD) < 0)
            OOH_LOG(kLog, Warning) << "lifting the seccomp suspension of thread " << tid_
                                   << " (PTRACE_SETOPTIONS): " << std::strerror(errno);
        seccomp_suspended_ = false;
    }
    if (injected_) {
        // Back to the state of the interrupt stop: registers, then leave the
        // syscall-exit stop through a fresh interrupt stop, so that the
        // kernel's signal path runs and restarts a sleeping syscall exactly
        // as it would have without us.
        OOH_TRY(setRegs(tid_, saved_regs_));
        if (::ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr) < 0)
            return Error::fromErrno(errno, "PTRACE_INTERRUPT");
        bool stopped = false;
        for (int i = 0; i < kMaxForeignStops && !stopped; ++i) {
            if (::ptrace(PTRACE_CONT, tid_, nullptr, nullptr) < 0)
                return Error::fromErrno(errno, "PTRACE_CONT");
            auto st = waitStop("the final interrupt stop");
            if (!st)
                return st.takeError();
            stopped = isEventStop(*st);
        }
        if (!stopped)
            return makeError(EAGAIN, "thread did not reach its final interrupt stop");
        // The regs must still be ours: nothing ran in user space since.
        OOH_TRY(setRegs(tid_, saved_regs_));
        injected_ = false;
    }
    if (::ptrace(PTRACE_SETSIGMASK, tid_, sizeof(uint64_t), &saved_sigmask_) < 0)
        return Error::fromErrno(errno, "restoring the signal mask (PTRACE_SETSIGMASK)");
    attached_ = false;
    if (::ptrace(PTRACE_DETACH, tid_, nullptr, nullptr) < 0)
        return Error::fromErrno(errno, "PTRACE_DETACH");
    return {};
}

} // namespace ooh

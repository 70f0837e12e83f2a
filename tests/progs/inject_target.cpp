// SPDX-License-Identifier: Apache-2.0
// ooh-inject-target: a process to inject into while it sleeps in a syscall,
// spins in user code, blocks in read(), runs several threads, or lives
// under seccomp. It checks its own work and prints "result N" (and exits 1
// on a syscall that returned an error the injection caused, such as EINTR).
#include "inject_target.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

using ooh::testprog::spinResult;
using ooh::testprog::step;

namespace {

uint64_t sleepWork(uint64_t seed, uint64_t n)
{
    uint64_t acc = seed;
    for (uint64_t i = 0; i < n; ++i) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        struct timespec before, after;
        clock_gettime(CLOCK_MONOTONIC, &before);
        if (nanosleep(&ts, nullptr) != 0) {
            std::printf("error nanosleep: %s\n", std::strerror(errno));
            std::exit(1);
        }
        clock_gettime(CLOCK_MONOTONIC, &after);
        long ns = (after.tv_sec - before.tv_sec) * 1000000000L + (after.tv_nsec - before.tv_nsec);
        if (ns < 5 * 1000 * 1000) {
            std::printf("error nanosleep returned early (%ld ns)\n", ns);
            std::exit(1);
        }
        acc = step(acc, i);
    }
    return acc;
}

void sleepMs(uint64_t ms)
{
    struct timespec ts = {static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1000000L};
    nanosleep(&ts, nullptr);
}

// Raw syscalls only: under strict mode nothing but read, write, exit and
// sigreturn is allowed (not even exit_group, which exit() would use).
void rawWrite(const char *s) { syscall(SYS_write, STDOUT_FILENO, s, std::strlen(s)); }
[[noreturn]] void rawExit(int code)
{
    for (;;)
        syscall(SYS_exit, code);
}

// The seccomp_data.arch value of this build's syscall ABI.
#if defined(__x86_64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#else
#error "add this architecture's AUDIT_ARCH_* value"
#endif

// A filter that kills the process on userfaultfd() (as a hardened
// profile might) and allows everything else.
int enterSeccompFilter()
{
    struct sock_filter insns[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_userfaultfd, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {static_cast<unsigned short>(sizeof(insns) / sizeof(insns[0])), insns};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

// Seccomp modes: enters strict mode or the filter above, then serves
// 16-byte commands {op, arg} on stdin, answering "ok" lines:
//   'w' i   write page i of its region     'f' -  make its forbidden syscall
//   'q' n   exit with status n              EOF    exit 0
// The forbidden syscall is getpid() in strict mode and userfaultfd() under
// the filter: seccomp must kill it then, tracked or not.
int seccompTarget(bool strict, uint64_t pages)
{
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    auto *mem = static_cast<volatile char *>(
        mmap(nullptr, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (mem == MAP_FAILED) {
        std::printf("error mmap: %s\n", std::strerror(errno));
        return 1;
    }
    for (uint64_t i = 0; i < pages; ++i)
        mem[i * page] = 1;
    char ready[96];
    std::snprintf(ready, sizeof(ready), "ready %d %#llx %llu\n", getpid(),
                  static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(mem)),
                  static_cast<unsigned long long>(pages));
    std::fflush(stdout);
    int r = strict ? prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) : enterSeccompFilter();
    if (r < 0) {
        std::printf("skip: cannot enter seccomp %s mode: %s\n", strict ? "strict" : "filter",
                    std::strerror(errno));
        return 0;
    }
    rawWrite(ready);
    uint64_t stamp = 0;
    for (;;) {
        uint64_t cmd[2];
        long n = syscall(SYS_read, STDIN_FILENO, cmd, sizeof(cmd));
        if (n == 0)
            rawExit(0);
        if (n != sizeof(cmd)) {
            rawWrite(n < 0 ? "error read failed\n" : "error short read\n");
            rawExit(1);
        }
        switch (cmd[0]) {
        case 'w':
            if (cmd[1] >= pages) {
                rawWrite("error page out of range\n");
                rawExit(1);
            }
            mem[cmd[1] * page + 8] = static_cast<char>(++stamp);
            rawWrite("ok\n");
            break;
        case 'f':
            if (strict)
                syscall(SYS_getpid);
            else
                syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
            rawWrite("error forbidden syscall returned\n");
            rawExit(1);
        case 'q': rawExit(static_cast<int>(cmd[1]));
        default: rawWrite("error unknown command\n"); rawExit(1);
        }
    }
}

} // namespace

int main(int argc, char **argv)
{
    if (argc < 2) {
        std::fprintf(stderr,
                     "usage: ooh-inject-target spin N | sleep N | nap MS | read | threads T N | "
                     "vfork MS | vforks T MS | spawn MS | uffd | seccomp-strict PAGES | "
                     "seccomp-filter PAGES\n");
        return 2;
    }
    std::string mode = argv[1];
    uint64_t n = argc > 2 ? std::strtoull(argv[2], nullptr, 0) : 0;
    if (mode == "seccomp-strict" || mode == "seccomp-filter")
        return seccompTarget(mode == "seccomp-strict", n);
    if (mode != "uffd") {
        std::printf("ready %d\n", getpid());
        std::fflush(stdout);
    }
    uint64_t result = 0;
    if (mode == "spin") {
        result = spinResult(1, n);
    } else if (mode == "sleep") {
        result = sleepWork(1, n);
    } else if (mode == "nap") {
        // One relative sleep of n ms, so that a test sees how it resumes.
        struct timespec ts = {static_cast<time_t>(n / 1000),
                              static_cast<long>(n % 1000) * 1000000L};
        if (nanosleep(&ts, nullptr) != 0) {
            std::printf("error nanosleep: %s\n", std::strerror(errno));
            return 1;
        }
        result = n;
    } else if (mode == "read") {
        uint64_t acc = 1, v, i = 0;
        for (;;) {
            ssize_t r = read(STDIN_FILENO, &v, sizeof(v));
            if (r == 0)
                break;
            if (r != sizeof(v)) {
                std::printf("error read: %s\n", r < 0 ? std::strerror(errno) : "short read");
                return 1;
            }
            acc = step(acc, v + i++);
        }
        result = acc;
    } else if (mode == "threads") {
        uint64_t threads = n;
        uint64_t work = argc > 3 ? std::strtoull(argv[3], nullptr, 0) : 1000;
        std::vector<uint64_t> out(threads);
        std::vector<std::thread> ts;
        for (uint64_t t = 0; t < threads; ++t)
            ts.emplace_back([&, t] {
                out[t] = (t % 2) ? sleepWork(t + 1, work / 100000 + 1) : spinResult(t + 1, work);
            });
        for (auto &t : ts)
            t.join();
        for (uint64_t t = 0; t < threads; ++t)
            result ^= out[t] + t;
    } else if (mode == "vfork") {
        // The parent waits uninterruptibly for n ms while its vfork() child
        // sleeps: no ptrace stop can reach it meanwhile.
        pid_t child = vfork();
        if (child == 0) {
            sleepMs(n);
            _exit(0);
        }
        result = spinResult(1, 1000);
    } else if (mode == "vforks") {
        // T threads each blocked in vfork() for MS ms; the result counts
        // the children that exited well.
        uint64_t ms = argc > 3 ? std::strtoull(argv[3], nullptr, 0) : 1000;
        std::atomic<uint64_t> done{0};
        std::vector<std::thread> ts;
        for (uint64_t t = 0; t < n; ++t)
            ts.emplace_back([&] {
                pid_t child = vfork();
                if (child == 0) {
                    sleepMs(ms);
                    _exit(0);
                }
                int status = 0;
                if (child > 0 && waitpid(child, &status, 0) == child && status == 0)
                    ++done;
            });
        for (auto &t : ts)
            t.join();
        result = done;
    } else if (mode == "spawn") {
        // For n ms, a chain of short-lived threads, each starting the next
        // before it ends: new threads keep appearing while any runs. The
        // result counts them.
        static std::atomic<bool> stop{false};
        static std::atomic<uint64_t> started{0};
        static std::atomic<int> live{0};
        struct Chain {
            static void link()
            {
                spinResult(started, 1000);
                if (!stop) {
                    ++live;
                    ++started;
                    std::thread(link).detach();
                }
                --live;
            }
        };
        ++live;
        ++started;
        std::thread(Chain::link).detach();
        sleepMs(n);
        stop = true;
        while (live > 0)
            sched_yield();
        result = started;
    } else if (mode == "uffd") {
        // Owns a userfaultfd registration, like a GC or Wine would.
        int uffd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY));
        struct uffdio_api api = {UFFD_API, 0, 0};
        void *mem =
            mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        struct uffdio_register reg = {};
        reg.range.start = reinterpret_cast<uint64_t>(mem);
        reg.range.len = 1 << 20;
        reg.mode = UFFDIO_REGISTER_MODE_MISSING;
        if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0 || ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
            std::printf("skip: cannot use userfaultfd here: %s\n", std::strerror(errno));
        else
            std::printf("uffd registered\n");
        std::fflush(stdout);
        pause();
    } else {
        std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
        return 2;
    }
    std::printf("result %llu\n", static_cast<unsigned long long>(result));
    return 0;
}

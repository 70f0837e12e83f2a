// SPDX-License-Identifier: Apache-2.0
// ooh-inject-target: a process to inject into while it sleeps in a syscall,
// spins in user code, blocks in read(), or runs several threads. It checks
// its own work and prints "result N" (and exits 1 on a syscall that
// returned an error the injection caused, such as EINTR).
#include "inject_target.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
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

} // namespace

int main(int argc, char **argv)
{
    if (argc < 2) {
        std::fprintf(stderr, "usage: ooh-inject-target spin N | sleep N | read | threads T N | vfork MS | uffd\n");
        return 2;
    }
    std::string mode = argv[1];
    uint64_t n = argc > 2 ? std::strtoull(argv[2], nullptr, 0) : 0;
    if (mode != "uffd") {
        std::printf("ready %d\n", getpid());
        std::fflush(stdout);
    }
    uint64_t result = 0;
    if (mode == "spin") {
        result = spinResult(1, n);
    } else if (mode == "sleep") {
        result = sleepWork(1, n);
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
            struct timespec ts = {static_cast<time_t>(n / 1000),
                                  static_cast<long>(n % 1000) * 1000000L};
            nanosleep(&ts, nullptr);
            _exit(0);
        }
        result = spinResult(1, 1000);
    } else if (mode == "uffd") {
        // Owns a userfaultfd registration, like a GC or Wine would.
        int uffd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY));
        struct uffdio_api api = {UFFD_API, 0, 0};
        void *mem = mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                         -1, 0);
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

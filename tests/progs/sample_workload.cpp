// SPDX-License-Identifier: Apache-2.0
// ooh-sample-workload: the demo's target. Holds --mib of memory and writes
// about --rate pages per second, mostly in a hot tenth of it, like a service
// with a working set. Runs until killed; checkpointable by CRIU (no
// terminal, no sockets).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sys/mman.h>
#include <thread>
#include <unistd.h>

int main(int argc, char **argv)
{
    size_t mib = 256, rate = 2000;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--mib") && i + 1 < argc)
            mib = std::strtoul(argv[++i], nullptr, 10);
        else if (!std::strcmp(argv[i], "--rate") && i + 1 < argc)
            rate = std::strtoul(argv[++i], nullptr, 10);
        else {
            std::fprintf(stderr, "usage: ooh-sample-workload [--mib N] [--rate PAGES_PER_SEC]\n");
            return 2;
        }
    }
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t pages = (mib << 20) / page;
    auto *mem = static_cast<uint8_t *>(mmap(nullptr, pages * page, PROT_READ | PROT_WRITE,
                                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (mem == MAP_FAILED || pages == 0) {
        std::perror("mmap");
        return 1;
    }
    for (size_t p = 0; p < pages; ++p)
        mem[p * page] = 1;
    std::mt19937_64 rng(1);
    const size_t hot = pages / 10 + 1;
    const size_t per_tick = rate / 100 + 1;  // 100 ticks per second
    for (uint64_t tick = 0;; ++tick) {
        for (size_t i = 0; i < per_tick; ++i) {
            size_t p = (rng() % 10) ? rng() % hot : rng() % pages;
            mem[p * page + (tick % (page / 8)) * 8] += 1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

// SPDX-License-Identifier: Apache-2.0
// ooh-dirty-writer: the ground truth of dirty tracking. It writes pages
// chosen by a seeded generator, between which it maps, unmaps, moves and
// grows memory, grows the heap with brk, discards pages, writes from several
// threads and from the kernel (read() into its memory, pwrite() into a memfd
// it also maps shared: a write no PTE of its own sees), and prints exactly
// which pages it wrote or discarded. A tracker must report all of them.
//
// Protocol (one command per line on stdin, answers on stdout):
//   round SEED    one round of work; answers "w START END" per written
//                 range, "d START END" per discarded range, then "end N"
//   fork          forks a child that serves the same protocol on the FIFOs
//                 DIR/PID.in and DIR/PID.out (DIR from --fifo-dir); the
//                 parent answers "child PID"; the child's memory is its own
//   exit          exits
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <malloc.h>
#include <map>
#include <random>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));

struct Region {
    uint8_t *base;
    size_t pages;
    bool is_brk = false;
    bool shared = false;
};

struct Writer {
    std::vector<Region> regions;
    // A memfd mapped MAP_SHARED, written through the file (never unmapped).
    int memfd = -1;
    Region file_region{};
    std::string fifo_dir = "/tmp";
    FILE *in = stdin;
    FILE *out = stdout;

    // This round's writes and discards, as (region index, page) pairs
    // resolved to addresses at the end of the round (regions may move).
    std::vector<std::pair<uint8_t *, size_t>> written;  // base-relative
    std::vector<std::pair<uintptr_t, uintptr_t>> discarded;

    void fail(const char *what)
    {
        std::fprintf(stderr, "ooh-dirty-writer: %s: %s\n", what, std::strerror(errno));
        std::exit(1);
    }

    Region &addRegion(size_t pages, bool shared)
    {
        int flags = (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS;
        void *p = mmap(nullptr, pages * kPage, PROT_READ | PROT_WRITE, flags, -1, 0);
        if (p == MAP_FAILED)
            fail("mmap");
        regions.push_back({static_cast<uint8_t *>(p), pages, false, shared});
        return regions.back();
    }

    void writePage(Region &r, size_t page, uint64_t value)
    {
        // A different value every time, at a varying offset in the page.
        size_t off = (value * 64) % (kPage - 8);
        std::memcpy(r.base + page * kPage + off, &value, sizeof(value));
    }

    void recordWrite(const Region &r, size_t page) { written.push_back({r.base, page}); }

    // Remaps a recorded write of the old base to the new base.
    void moved(uint8_t *old_base, uint8_t *new_base)
    {
        for (auto &w : written)
            if (w.first == old_base)
                w.first = new_base;
    }

    // An unmapped region has no contents left to report: neither what was
    // written nor what was discarded there earlier in the round.
    void dropped(const Region &r)
    {
        std::erase_if(written, [&](const auto &w) { return w.first == r.base; });
        auto lo = reinterpret_cast<uintptr_t>(r.base), hi = lo + r.pages * kPage;
        std::erase_if(discarded, [&](const auto &d) { return d.first >= lo && d.second <= hi; });
    }

    void round(uint64_t seed)
    {
        std::mt19937_64 rng(seed);
        auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
        written.clear();
        discarded.clear();

        int ops = 6 + static_cast<int>(pick(10));
        for (int op = 0; op < ops; ++op) {
            switch (pick(11)) {
            case 0: { // new mapping, partly written
                Region &r = addRegion(1 + pick(64), pick(4) == 0);
                for (size_t i = 0, n = 1 + pick(r.pages); i < n; ++i) {
                    size_t p = pick(r.pages);
                    writePage(r, p, rng());
                    recordWrite(r, p);
                }
                break;
            }
            case 1: // unmap one
                if (regions.size() > 3) {
                    size_t i = 2 + pick(regions.size() - 2);
                    if (regions[i].is_brk)
                        break;
                    dropped(regions[i]);
                    munmap(regions[i].base, regions[i].pages * kPage);
                    regions.erase(regions.begin() + static_cast<long>(i));
                }
                break;
            case 2: { // move (and maybe grow) one, then write into it
                size_t i = pick(regions.size());
                Region &r = regions[i];
                if (r.is_brk || r.shared)
                    break;
                size_t new_pages = r.pages + pick(16);
                void *p = mremap(r.base, r.pages * kPage, new_pages * kPage, MREMAP_MAYMOVE);
                if (p == MAP_FAILED)
                    fail("mremap");
                moved(r.base, static_cast<uint8_t *>(p));
                r.base = static_cast<uint8_t *>(p);
                r.pages = new_pages;
                size_t pg = pick(r.pages);
                writePage(r, pg, rng());
                recordWrite(r, pg);
                break;
            }
            case 3: { // grow the heap with brk and write the new pages
                size_t grow = 1 + pick(8);
                void *old = sbrk(static_cast<intptr_t>(grow * kPage));
                if (old == reinterpret_cast<void *>(-1))
                    fail("sbrk");
                // Each growth is a region of its own that is never unmapped.
                regions.push_back({static_cast<uint8_t *>(old), grow, true, false});
                for (size_t p = 0; p < grow; ++p) {
                    writePage(regions.back(), p, rng());
                    recordWrite(regions.back(), p);
                }
                break;
            }
            case 4: { // discard pages (their contents become zero)
                Region &r = regions[pick(regions.size())];
                if (r.pages == 0 || r.is_brk)
                    break;
                size_t p = pick(r.pages), n = 1 + pick(std::min<size_t>(4, r.pages - p));
                if (madvise(r.base + p * kPage, n * kPage, MADV_DONTNEED) == 0)
                    discarded.push_back({reinterpret_cast<uintptr_t>(r.base + p * kPage),
                                         reinterpret_cast<uintptr_t>(r.base + (p + n) * kPage)});
                break;
            }
            case 5: { // several threads writing at once
                int threads = 2 + static_cast<int>(pick(3));
                std::vector<std::vector<std::pair<Region *, size_t>>> plans(threads);
                for (auto &plan : plans)
                    for (size_t k = 0, n = 1 + pick(32); k < n; ++k) {
                        Region &r = regions[pick(regions.size())];
                        if (r.pages)
                            plan.push_back({&r, pick(r.pages)});
                    }
                std::vector<std::thread> ts;
                for (auto &plan : plans) {
                    uint64_t v = rng();
                    ts.emplace_back([this, &plan, v] {
                        for (auto &[r, p] : plan)
                            writePage(*r, p, v + p);
                    });
                }
                for (auto &t : ts)
                    t.join();
                for (auto &plan : plans)
                    for (auto &[r, p] : plan)
                        recordWrite(*r, p);
                break;
            }
            case 6: { // the kernel writes: read() from a pipe into our memory
                Region &r = regions[pick(regions.size())];
                if (!r.pages)
                    break;
                size_t p = pick(r.pages);
                int fds[2];
                if (pipe(fds) < 0)
                    fail("pipe");
                uint64_t v = rng();
                if (write(fds[1], &v, sizeof(v)) != sizeof(v) ||
                    read(fds[0], r.base + p * kPage + 128, sizeof(v)) != sizeof(v))
                    fail("pipe round trip");
                close(fds[0]);
                close(fds[1]);
                recordWrite(r, p);
                break;
            }
            case 8: { // write the memfd through the page cache, not the mapping
                size_t p = pick(file_region.pages);
                uint64_t v = rng();
                if (pwrite(memfd, &v, sizeof(v), static_cast<off_t>(p * kPage + 256)) !=
                    sizeof(v))
                    fail("pwrite memfd");
                recordWrite(file_region, p);
                break;
            }
            case 7: { // write-protect, then unprotect and write
                Region &r = regions[pick(regions.size())];
                if (!r.pages || r.is_brk)
                    break;
                mprotect(r.base, r.pages * kPage, PROT_READ);
                mprotect(r.base, r.pages * kPage, PROT_READ | PROT_WRITE);
                size_t p = pick(r.pages);
                writePage(r, p, rng());
                recordWrite(r, p);
                break;
            }
            default: { // plain writes, many pages
                for (size_t k = 0, n = 1 + pick(64); k < n; ++k) {
                    Region &r = regions[pick(regions.size())];
                    if (!r.pages)
                        continue;
                    size_t p = pick(r.pages);
                    writePage(r, p, rng());
                    recordWrite(r, p);
                }
            }
            }
        }
        report();
    }

    void report()
    {
        std::vector<uintptr_t> pages;
        for (auto &[base, p] : written)
            pages.push_back(reinterpret_cast<uintptr_t>(base) + p * kPage);
        std::sort(pages.begin(), pages.end());
        pages.erase(std::unique(pages.begin(), pages.end()), pages.end());
        for (uintptr_t a : pages)
            std::fprintf(out, "w %#lx %#lx\n", a, a + kPage);
        for (auto &[s, e] : discarded)
            std::fprintf(out, "d %#lx %#lx\n", s, e);
        std::fprintf(out, "end %zu\n", pages.size());
        std::fflush(out);
    }

    void forkChild()
    {
        std::fflush(out);
        pid_t child = fork();
        if (child < 0)
            fail("fork");
        if (child > 0) {
            std::fprintf(out, "child %d\n", child);
            std::fflush(out);
            return;
        }
        std::string base = fifo_dir + "/" + std::to_string(getpid());
        if (mkfifo((base + ".in").c_str(), 0600) < 0 || mkfifo((base + ".out").c_str(), 0600) < 0)
            fail("mkfifo");
        // Signal readiness by creating the FIFOs; the test opens them in order.
        in = std::fopen((base + ".in").c_str(), "r");
        out = std::fopen((base + ".out").c_str(), "w");
        if (!in || !out)
            fail("open FIFOs");
        written.clear();
    }

    void serve()
    {
        // Initial memory: a big region, a small one, a shared one, and brk.
        addRegion(4096, false);
        addRegion(16, false);
        addRegion(32, true);
        memfd = memfd_create("ooh-dirty-writer", MFD_CLOEXEC);
        if (memfd < 0 || ftruncate(memfd, static_cast<off_t>(16 * kPage)) < 0)
            fail("memfd");
        void *m = mmap(nullptr, 16 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
        if (m == MAP_FAILED)
            fail("mmap memfd");
        file_region = {static_cast<uint8_t *>(m), 16, false, true};
        char line[256];
        std::fprintf(out, "ready %d\n", getpid());
        std::fflush(out);
        while (std::fgets(line, sizeof(line), in)) {
            unsigned long long seed;
            if (std::sscanf(line, "round %llu", &seed) == 1)
                round(seed);
            else if (std::strncmp(line, "fork", 4) == 0)
                forkChild();
            else if (std::strncmp(line, "exit", 4) == 0)
                break;
            else {
                std::fprintf(out, "error unknown command\n");
                std::fflush(out);
            }
        }
    }
};

} // namespace

int main(int argc, char **argv)
{
    // malloc shares the brk area with the heap growth above: never let it
    // trim the heap under our pages.
    mallopt(M_TRIM_THRESHOLD, INT32_MAX);
    Writer w;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--fifo-dir") == 0 && i + 1 < argc)
            w.fifo_dir = argv[++i];
        else {
            std::fprintf(stderr, "usage: ooh-dirty-writer [--fifo-dir DIR]  (commands on stdin: "
                                 "round SEED | fork | exit)\n");
            return 2;
        }
    }
    w.serve();
    return 0;
}

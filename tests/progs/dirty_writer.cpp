// SPDX-License-Identifier: Apache-2.0
// ooh-dirty-writer: the ground truth of dirty tracking. It writes pages
// chosen by a seeded generator, between which it maps, unmaps, moves and
// grows memory, grows the heap with brk, discards pages, writes from several
// threads and from the kernel (read() into its memory, pwrite() into a memfd
// it also maps shared: a write no PTE of its own sees), and prints exactly
// which pages it wrote or discarded. A tracker must report all of them.
// It also prints what a tracker may report whole without tracking it
// exactly: the mappings it created, moved or grew in the round (brk growth
// included) and its shared mappings. It never creates a mapping it does not
// print: thread stacks come from a pool mapped at start, and malloc neither
// maps chunks nor creates arenas (only its brk growth is counted).
//
// Protocol (one command per line on stdin, answers on stdout):
//   round SEED    one round of work; answers "w START END" per written
//                 range, "d START END" per discarded range, "c START END"
//                 per mapping created, moved or grown (since the previous
//                 answer), "s START END" per shared mapping, then "end N"
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
#include <pthread.h>
#include <random>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace {

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));
// Threads of one round at most, and the stack each gets from the pool.
constexpr int kMaxThreads = 4;
constexpr size_t kThreadStack = 256 * 1024;

uintptr_t pageDown(uintptr_t a) { return a & ~(kPage - 1); }
uintptr_t pageUp(uintptr_t a) { return pageDown(a + kPage - 1); }

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
    std::vector<std::pair<uint8_t *, size_t>> written; // base-relative
    std::vector<std::pair<uintptr_t, uintptr_t>> discarded;
    // Mappings created, moved or grown since the previous answer.
    std::vector<std::pair<uintptr_t, uintptr_t>> created;
    // The program break at the previous answer (page-aligned up): the heap
    // above it is new, whether sbrk() below or malloc grew it.
    uintptr_t brk_mark = 0;
    // Stacks for the threads of a round, mapped once before any tracking:
    // glibc would map (or reuse from its cache) 8 MiB stacks, mappings
    // this program could not account for.
    uint8_t *stacks = nullptr;

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
        noteCreated(p, pages);
        return regions.back();
    }

    void noteCreated(void *base, size_t pages)
    {
        auto a = reinterpret_cast<uintptr_t>(base);
        created.push_back({a, a + pages * kPage});
    }

    void markBrk() { brk_mark = pageUp(reinterpret_cast<uintptr_t>(sbrk(0))); }

    struct ThreadPlan {
        Writer *writer;
        std::vector<std::pair<Region *, size_t>> *pages;
        uint64_t value;
    };

    static void *threadMain(void *arg)
    {
        auto *plan = static_cast<ThreadPlan *>(arg);
        for (auto &[r, p] : *plan->pages)
            plan->writer->writePage(*r, p, plan->value + p);
        return nullptr;
    }

    // Runs one thread per plan on the pool's stacks and waits for them.
    void runThreads(std::vector<std::vector<std::pair<Region *, size_t>>> &plans,
                    std::mt19937_64 &rng)
    {
        std::vector<ThreadPlan> args;
        for (auto &plan : plans)
            args.push_back({this, &plan, rng()});
        std::vector<pthread_t> ts(plans.size());
        for (size_t i = 0; i < plans.size(); ++i) {
            pthread_attr_t attr;
            pthread_attr_init(&attr);
            pthread_attr_setstack(&attr, stacks + i * kThreadStack, kThreadStack);
            int err = pthread_create(&ts[i], &attr, threadMain, &args[i]);
            pthread_attr_destroy(&attr);
            if (err) {
                errno = err;
                fail("pthread_create");
            }
        }
        for (auto t : ts)
            pthread_join(t, nullptr);
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
        created.clear();

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
                noteCreated(p, new_pages);
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
                int threads = 2 + static_cast<int>(pick(kMaxThreads - 1));
                std::vector<std::vector<std::pair<Region *, size_t>>> plans(threads);
                for (auto &plan : plans)
                    for (size_t k = 0, n = 1 + pick(32); k < n; ++k) {
                        Region &r = regions[pick(regions.size())];
                        if (r.pages)
                            plan.push_back({&r, pick(r.pages)});
                    }
                runThreads(plans, rng);
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
                if (pwrite(memfd, &v, sizeof(v), static_cast<off_t>(p * kPage + 256)) != sizeof(v))
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
        // After the lines above: the first answer on a new stream allocates
        // its buffer, which may grow the heap.
        uintptr_t brk_now = pageUp(reinterpret_cast<uintptr_t>(sbrk(0)));
        if (brk_now > brk_mark)
            created.push_back({brk_mark, brk_now});
        brk_mark = brk_now;
        for (auto &[s, e] : created)
            std::fprintf(out, "c %#lx %#lx\n", s, e);
        for (const Region &r : regions)
            if (r.shared)
                std::fprintf(out, "s %#lx %#lx\n", reinterpret_cast<uintptr_t>(r.base),
                             reinterpret_cast<uintptr_t>(r.base) + r.pages * kPage);
        std::fprintf(out, "s %#lx %#lx\n", reinterpret_cast<uintptr_t>(file_region.base),
                     reinterpret_cast<uintptr_t>(file_region.base) + file_region.pages * kPage);
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
        created.clear();
        // Tracking of the child starts about now; what the heap gains from
        // here on (the FIFOs' buffers) is reported in its first round.
        markBrk();
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
        void *st = mmap(nullptr, kMaxThreads * kThreadStack, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (st == MAP_FAILED)
            fail("mmap thread stacks");
        stacks = static_cast<uint8_t *>(st);
        // Tracking starts after "ready": nothing mapped so far is new to it.
        created.clear();
        char line[256];
        markBrk();
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
    // Every allocation from the brk heap, whose growth is reported: no
    // mmap()ed chunks, no per-thread arenas (64 MiB reservations).
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_ARENA_MAX, 1);
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

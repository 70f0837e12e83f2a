// SPDX-License-Identifier: Apache-2.0
// Workload for the CRIU chain test: keeps writing random pages whose content
// is a stamp of (address, generation), remaps and discards memory, runs a
// second thread and, on request, forks a child. The generation tables live
// in its own memory, so after `criu restore` it can verify every page it
// ever wrote (SIGUSR1). SIGRTMIN pauses writing and reports how many distinct
// pages were written since the last SIGRTMIN+1 (resume): the ground truth
// for the dirty sets of the dumps taken while paused.
//
// Files in --dir: pid-main, pid-child, paused-PID, result-PID.
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <getopt.h>
#include <pthread.h>
#include <string>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "page_stamp.h"

namespace {

constexpr int kSideMaps = 4;

volatile sig_atomic_t g_verify, g_pause, g_resume, g_fork;

uint64_t xorshift(uint64_t &s)
{
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

// A stamped mapping the workload writes, and the pages written since resume.
struct Region {
    ooh::testprog::StampedRegion mem;
    std::vector<uint8_t> touched;

    void map(size_t n)
    {
        if (!mem.map(n)) {
            perror("mmap");
            std::exit(2);
        }
        touched.assign(n, 0);
    }
    void unmap()
    {
        mem.unmap();
        touched.clear();
    }
    size_t pages() const { return mem.pages(); }
    void write(size_t i)
    {
        mem.write(i);
        touched[i] = 1;
    }
    void discard(size_t i)
    {
        mem.discard(i);
        touched[i] = 0;
    }
    size_t written() const
    {
        size_t n = 0;
        for (uint8_t t : touched)
            n += t;
        return n;
    }
    void resetTouched() { std::fill(touched.begin(), touched.end(), 0); }
};

struct State {
    std::string dir;
    size_t opsPerTick = 20;
    Region main;
    Region thread;
    Region side[kSideMaps];
    uint64_t rng = 0x1234567;
    uint64_t threadRng = 0xabcdef;
    bool isChild = false;
    pthread_t writer{};
    bool haveThread = false;
    std::atomic<int> threadStop{0};
    std::atomic<int> threadStopped{0};
} g;

void writeFile(const std::string &name, const std::string &text)
{
    std::string path = g.dir + "/" + name, tmp = path + ".tmp";
    FILE *f = std::fopen(tmp.c_str(), "w");
    if (!f) {
        perror(tmp.c_str());
        std::exit(2);
    }
    std::fputs(text.c_str(), f);
    std::fclose(f);
    std::rename(tmp.c_str(), path.c_str());
}

void *writerThread(void *)
{
    while (true) {
        if (g.threadStop.load()) {
            g.threadStopped.store(1);
            while (g.threadStop.load())
                usleep(200);
            g.threadStopped.store(0);
        }
        for (size_t k = 0; k < g.opsPerTick / 2 + 1; k++)
            g.thread.write(xorshift(g.threadRng) % g.thread.pages());
        usleep(1000);
    }
    return nullptr;
}

void stopThread()
{
    if (!g.haveThread)
        return;
    g.threadStop.store(1);
    while (!g.threadStopped.load())
        usleep(200);
}

void resumeThread()
{
    if (g.haveThread)
        g.threadStop.store(0);
}

void remapSide(int j)
{
    // A new mapping, often at the old address: its pages must not come
    // back from the parent images.
    if (g.side[j].mem.mapped())
        g.side[j].unmap();
    g.side[j].map(8 + xorshift(g.rng) % 56);
    for (size_t k = 0; k < g.side[j].pages() / 3; k++)
        g.side[j].write(xorshift(g.rng) % g.side[j].pages());
}

void oneOp(uint64_t n)
{
    uint64_t r = xorshift(g.rng) % 100;
    if (n % 400 == 399) {
        remapSide(int(xorshift(g.rng) % kSideMaps));
    } else if (r < 88) {
        g.main.write(xorshift(g.rng) % g.main.pages());
    } else if (r < 96) {
        Region &s = g.side[xorshift(g.rng) % kSideMaps];
        s.write(xorshift(g.rng) % s.pages());
    } else {
        g.main.discard(xorshift(g.rng) % g.main.pages());
    }
}

size_t writtenPages()
{
    size_t n = g.main.written();
    for (auto &s : g.side)
        n += s.written();
    if (g.haveThread)
        n += g.thread.written();
    return n;
}

void resetWritten()
{
    g.main.resetTouched();
    g.thread.resetTouched();
    for (auto &s : g.side)
        s.resetTouched();
}

[[noreturn]] void verifyAndExit()
{
    stopThread();
    std::string first;
    size_t bad = g.main.mem.verify("main", &first);
    bad += g.thread.mem.verify("thread", &first);
    size_t checked = g.main.pages() + g.thread.pages();
    for (int j = 0; j < kSideMaps; j++) {
        bad += g.side[j].mem.verify("side", &first);
        checked += g.side[j].pages();
    }
    std::string report = ooh::testprog::verifyReport(bad, checked, first);
    writeFile("result-" + std::to_string(getpid()), report);
    std::_Exit(bad ? 1 : 0);
}

void onSignal(int sig)
{
    if (sig == SIGUSR1)
        g_verify = 1;
    else if (sig == SIGUSR2)
        g_fork = 1;
    else if (sig == SIGRTMIN)
        g_pause = 1;
    else if (sig == SIGRTMIN + 1)
        g_resume = 1;
}

void forkChild()
{
    stopThread(); // no half-written thread page in the child's copy
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        std::exit(2);
    }
    if (pid == 0) {
        g.isChild = true;
        g.haveThread = false; // only the forking thread exists in the child
        g.rng ^= 0x5555aaaa5555ull;
        writeFile("pid-child", std::to_string(getpid()) + "\n");
        return;
    }
    resumeThread();
}

} // namespace

int main(int argc, char **argv)
{
    size_t mainPages = 8192, threadPages = 2048;
    static const option opts[] = {
        {"dir", required_argument, nullptr, 'd'},
        {"pages", required_argument, nullptr, 'p'},
        {"thread-pages", required_argument, nullptr, 't'},
        {"ops", required_argument, nullptr, 'o'},
        {"help", no_argument, nullptr, 'h'},
        {},
    };
    int c;
    while ((c = getopt_long(argc, argv, "d:p:t:o:h", opts, nullptr)) != -1) {
        switch (c) {
        case 'd': g.dir = optarg; break;
        case 'p': mainPages = std::strtoul(optarg, nullptr, 0); break;
        case 't': threadPages = std::strtoul(optarg, nullptr, 0); break;
        case 'o': g.opsPerTick = std::strtoul(optarg, nullptr, 0); break;
        default:
            std::fprintf(stderr,
                         "usage: %s --dir DIR [--pages N] [--thread-pages N] [--ops PER_MS]\n",
                         argv[0]);
            return c == 'h' ? 0 : 2;
        }
    }
    if (g.dir.empty() || !mainPages || !threadPages) {
        std::fprintf(stderr, "%s: --dir is required\n", argv[0]);
        return 2;
    }

    struct sigaction sa = {};
    sa.sa_handler = onSignal;
    sigemptyset(&sa.sa_mask);
    for (int sig : {SIGUSR1, SIGUSR2, SIGRTMIN, SIGRTMIN + 1})
        sigaction(sig, &sa, nullptr);

    g.main.map(mainPages);
    g.thread.map(threadPages);
    // Half the pages written, the rest left as holes.
    for (size_t i = 0; i < mainPages; i += 2)
        g.main.write(i);
    for (size_t i = 0; i < threadPages; i += 2)
        g.thread.write(i);
    for (int j = 0; j < kSideMaps; j++)
        remapSide(j);

    // The thread is created before any signal can stop it.
    if (pthread_create(&g.writer, nullptr, writerThread, nullptr)) {
        std::fprintf(stderr, "pthread_create failed\n");
        return 2;
    }
    g.haveThread = true;
    writeFile("pid-main", std::to_string(getpid()) + "\n");

    bool paused = false;
    for (uint64_t n = 0;;) {
        if (g_verify)
            verifyAndExit();
        if (g_pause) {
            g_pause = 0;
            stopThread();
            paused = true;
            writeFile("paused-" + std::to_string(getpid()),
                      "written " + std::to_string(writtenPages()) + "\n");
        }
        if (g_resume) {
            g_resume = 0;
            resetWritten();
            paused = false;
            resumeThread();
        }
        if (g_fork && !g.isChild) {
            g_fork = 0;
            forkChild();
        }
        if (paused) {
            usleep(500);
            continue;
        }
        for (size_t k = 0; k < g.opsPerTick; k++)
            oneOp(n++);
        usleep(1000);
    }
}

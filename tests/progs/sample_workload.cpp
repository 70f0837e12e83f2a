// SPDX-License-Identifier: Apache-2.0
// ooh-sample-workload: the demo's target. Holds --mib of memory and writes
// about --rate pages per second, mostly in a hot tenth of it, like a service
// with a working set (--uniform: spread over all of it). Runs until killed;
// checkpointable by CRIU (no terminal; a socket only with --listen).
//
// Every write stamps a whole page (page_stamp.h), so the workload can tell
// whether its memory is what it wrote, e.g. after a CRIU restore: on SIGUSR1
// it checks every page and writes "OK N pages match" or "FAIL ..." to the
// --report file, then goes on. `--verify PID --report FILE` is the other
// side, fit for `oohctl checkpoint --verify-command`: it asks PID, waits for
// the report, prints it ("N pages match") and exits 0 only if it is OK.
//
// --listen ADDR:PORT makes it a TCP service for migration tests: it serves
// one client at a time, and answers each line "verify" with the same check
// and the network namespace that answered ("OK N pages match net:[ID]"),
// so a client that stays connected through a migration sees the host move;
// "ping N" gets "pong N net:[ID]", cheap enough to send all along.
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <netinet/in.h>
#include <random>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include "page_stamp.h"

namespace {

volatile sig_atomic_t g_verify;

void onVerify(int) { g_verify = 1; }

// Written whole or not at all: the verifier waits for the name to appear.
bool writeReport(const std::string &path, const std::string &text)
{
    std::string tmp = path + ".tmp";
    FILE *f = std::fopen(tmp.c_str(), "w");
    if (!f)
        return false;
    bool ok = std::fputs(text.c_str(), f) >= 0;
    ok = std::fclose(f) == 0 && ok;
    return ok && std::rename(tmp.c_str(), path.c_str()) == 0;
}

// The verifier: the workload's answer, or a failure naming what is missing.
int askToVerify(pid_t pid, const std::string &report)
{
    if (std::remove(report.c_str()) < 0 && errno != ENOENT) {
        std::fprintf(stderr, "ooh-sample-workload: can't remove the old %s: %s\n", report.c_str(),
                     std::strerror(errno));
        return 1;
    }
    if (kill(pid, SIGUSR1) < 0) {
        std::fprintf(stderr, "ooh-sample-workload: can't signal pid %d: %s\n", int(pid),
                     std::strerror(errno));
        return 1;
    }
    // 256 MiB verify in well under a second; a minute means it is not
    // running (stopped, or not this workload).
    for (int i = 0; i < 600; i++) {
        std::ifstream in(report);
        std::string line;
        if (in && std::getline(in, line)) {
            if (line.rfind("OK ", 0) == 0) {
                std::printf("%s\n", line.c_str() + 3);
                return 0;
            }
            std::printf("%s\n", line.c_str());
            return 1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::fprintf(stderr, "ooh-sample-workload: pid %d wrote no report to %s within 60 s\n",
                 int(pid), report.c_str());
    return 1;
}

[[noreturn]] void usage()
{
    std::fprintf(stderr, "usage: ooh-sample-workload [--mib N] [--rate PAGES_PER_SEC] [--uniform]\n"
                         "                           [--report FILE] [--listen ADDR:PORT]\n"
                         "       ooh-sample-workload --verify PID --report FILE\n");
    std::exit(2);
}

// A non-blocking listening socket on ADDR:PORT (IPv4), or -1.
int listenOn(const std::string &spec)
{
    auto colon = spec.rfind(':');
    sockaddr_in sa = {};
    sa.sin_family = AF_INET;
    if (colon == std::string::npos ||
        inet_pton(AF_INET, spec.substr(0, colon).c_str(), &sa.sin_addr) != 1)
        return -1;
    sa.sin_port = htons(uint16_t(std::strtoul(spec.c_str() + colon + 1, nullptr, 10)));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) < 0 || listen(fd, 4) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

std::string netNamespace()
{
    char buf[64];
    ssize_t n = readlink("/proc/self/ns/net", buf, sizeof(buf) - 1);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

} // namespace

int main(int argc, char **argv)
{
    size_t mib = 256, rate = 2000;
    pid_t verifyPid = 0;
    bool uniform = false;
    std::string report, listenSpec;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--mib") && i + 1 < argc)
            mib = std::strtoul(argv[++i], nullptr, 10);
        else if (!std::strcmp(argv[i], "--rate") && i + 1 < argc)
            rate = std::strtoul(argv[++i], nullptr, 10);
        else if (!std::strcmp(argv[i], "--report") && i + 1 < argc)
            report = argv[++i];
        else if (!std::strcmp(argv[i], "--uniform"))
            uniform = true;
        else if (!std::strcmp(argv[i], "--listen") && i + 1 < argc)
            listenSpec = argv[++i];
        else if (!std::strcmp(argv[i], "--verify") && i + 1 < argc)
            verifyPid = pid_t(std::strtol(argv[++i], nullptr, 10));
        else
            usage();
    }
    if (verifyPid) {
        if (verifyPid < 0 || report.empty())
            usage();
        return askToVerify(verifyPid, report);
    }

    const size_t pages = (mib << 20) / ooh::testprog::kStampPage;
    ooh::testprog::StampedRegion mem;
    if (pages == 0 || !mem.map(pages)) {
        std::perror("mmap");
        return 1;
    }
    for (size_t p = 0; p < pages; ++p)
        mem.write(p);
    struct sigaction sa = {};
    sa.sa_handler = onVerify;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, nullptr);
    int listenFd = -1, client = -1;
    std::string request;
    if (!listenSpec.empty() && (listenFd = listenOn(listenSpec)) < 0) {
        std::fprintf(stderr, "ooh-sample-workload: can't listen on %s: %s\n", listenSpec.c_str(),
                     std::strerror(errno));
        return 1;
    }

    std::mt19937_64 rng(1);
    const size_t hot = pages / 10 + 1;
    const size_t per_tick = rate / 100 + 1; // 100 ticks per second
    for (;;) {
        if (g_verify) {
            // Between writes: every page is whole.
            g_verify = 0;
            std::string first;
            size_t bad = mem.verify("memory", &first);
            std::string text = ooh::testprog::verifyReport(bad, pages, first);
            if (report.empty())
                std::fputs(text.c_str(), stderr);
            else if (!writeReport(report, text))
                std::fprintf(stderr, "ooh-sample-workload: can't write %s: %s\n", report.c_str(),
                             std::strerror(errno));
        }
        if (listenFd >= 0) {
            int fd = accept4(listenFd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0) {
                if (client >= 0)
                    close(client);
                client = fd;
                request.clear();
            }
            char buf[256];
            ssize_t n = client >= 0 ? read(client, buf, sizeof(buf)) : -1;
            if (n == 0) {
                close(client);
                client = -1;
            } else if (n > 0) {
                request.append(buf, size_t(n));
                for (size_t nl; (nl = request.find('\n')) != std::string::npos;) {
                    std::string line = request.substr(0, nl);
                    request.erase(0, nl + 1);
                    std::string text = "unknown request\n";
                    if (line.rfind("ping ", 0) == 0) {
                        text = "pong " + line.substr(5) + " " + netNamespace() + "\n";
                    } else if (line == "verify") {
                        std::string first;
                        size_t bad = mem.verify("memory", &first);
                        text = ooh::testprog::verifyReport(bad, pages, first);
                        text.insert(text.size() - 1, " " + netNamespace());
                    }
                    if (write(client, text.data(), text.size()) < 0)
                        std::fprintf(stderr, "ooh-sample-workload: write: %s\n",
                                     std::strerror(errno));
                }
            }
        }
        for (size_t i = 0; i < per_tick; ++i) {
            size_t p;
            if (uniform)
                p = rng() % pages;
            else
                p = (rng() % 10) ? rng() % hot : rng() % pages;
            mem.write(p);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

// SPDX-License-Identifier: Apache-2.0
// oohctl: command-line client of oohd.
#include "checkpoint.h"
#include "config.h"
#include "migrate.h"
#include "ooh/ooh.h"
#include "ooh/ooh.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <getopt.h>
#include <string>
#include <thread>
#include <vector>

namespace {

void usage(FILE *out)
{
    std::fprintf(
        out,
        "Usage: oohctl [--socket PATH] COMMAND [ARGS]\n"
        "\n"
        "Client of oohd, the dirty-page tracking daemon.\n"
        "\n"
        "Commands:\n"
        "  backends                    list tracking backends and whether they work here\n"
        "  track PID [--backend NAME]  start tracking PID (its first epoch starts now)\n"
        "  collect PID [--json]        print the pages written since the previous\n"
        "                              collect, and start a new epoch\n"
        "  untrack PID                 stop tracking PID\n"
        "  stats PID [--json]          print tracking statistics of PID\n"
        "  watch PID [--interval SEC]  show dirty pages per second until Ctrl-C\n"
        "                              (tracks PID for the duration if needed)\n"
        "  checkpoint ...              iterative CRIU pre-dump until convergence, then\n"
        "                              dump (see `oohctl checkpoint --help`)\n"
        "  migrate ...                 live migration to another host over CRIU's page\n"
        "                              server (see `oohctl migrate --help`)\n"
        "\n"
        "Options:\n"
        "  -s, --socket PATH   oohd's socket (default $OOH_SOCKET or %s)\n"
        "  -h, --help          show this help\n"
        "\n"
        "collect --json prints one object:\n"
        "  {\"pid\": N, \"epoch\": E, \"page_size\": 4096, \"ranges\": [[start, end], ...]}\n"
        "with byte addresses, end exclusive.\n",
        OOH_DEFAULT_SOCKET_PATH);
}

int die(const char *what, const std::string &msg, int code = 1)
{
    std::fprintf(stderr, "oohctl: %s: %s\n", what, msg.c_str());
    return code;
}

bool parsePid(const char *s, pid_t *pid)
{
    char *end = nullptr;
    errno = 0;
    long v = std::strtol(s, &end, 10);
    if (errno || !end || *end || v <= 0 || v > 0x3fffffff)
        return false;
    *pid = static_cast<pid_t>(v);
    return true;
}

volatile sig_atomic_t g_interrupted = 0;
void onInterrupt(int) { g_interrupted = 1; }

struct Args {
    std::vector<std::string> positional;
    bool json = false;
    std::string backend;
    double interval = 1.0;
};

// Parses the command's own options; returns false on a usage error.
bool parseCommandArgs(int argc, char **argv, Args *a, std::string *err)
{
    for (int i = 0; i < argc; ++i) {
        std::string s = argv[i];
        if (s == "--json")
            a->json = true;
        else if (s == "--backend" && i + 1 < argc)
            a->backend = argv[++i];
        else if (s.rfind("--backend=", 0) == 0)
            a->backend = s.substr(10);
        else if (s == "--interval" && i + 1 < argc) {
            char *end = nullptr;
            a->interval = std::strtod(argv[++i], &end);
            if (*end || a->interval <= 0) {
                *err = "invalid interval '" + std::string(argv[i]) + "'";
                return false;
            }
        } else if (s.size() > 1 && s[0] == '-') {
            *err = "unknown option '" + s + "'";
            return false;
        } else
            a->positional.push_back(s);
    }
    return true;
}

int cmdBackends(ooh::Client &c)
{
    ooh_backend_info info[16];
    long n = ooh_backends(c.get(), info, 16);
    if (n < 0)
        return die("backends", c.error());
    for (long i = 0; i < n && i < 16; ++i)
        std::printf("%-12s %-12s %s%s\n", info[i].name,
                    info[i].available ? "available" : "unavailable", info[i].reason,
                    info[i].is_default ? " [default]" : "");
    return 0;
}

int cmdCollect(ooh::Client &c, pid_t pid, bool json)
{
    std::vector<ooh_range> ranges;
    ooh_collect_info info{};
    if (c.collect(pid, ranges, &info) < 0)
        return die("collect", c.error());
    if (json) {
        std::string out = "{\"pid\": " + std::to_string(pid) +
                          ", \"epoch\": " + std::to_string(info.epoch) +
                          ", \"page_size\": " + std::to_string(info.page_size) + ", \"ranges\": [";
        for (size_t i = 0; i < ranges.size(); ++i) {
            out += (i ? ", [" : "[") + std::to_string(ranges[i].start) + ", " +
                   std::to_string(ranges[i].end) + "]";
        }
        out += "]}\n";
        std::fputs(out.c_str(), stdout);
        return 0;
    }
    uint64_t wholesale = 0;
    for (const auto &r : ranges)
        if (r.flags & OOH_RANGE_WHOLESALE)
            wholesale += (r.end - r.start) / info.page_size;
    std::printf("pid %d epoch %llu: %llu dirty pages in %zu ranges (%llu reported wholesale)\n",
                pid, static_cast<unsigned long long>(info.epoch),
                static_cast<unsigned long long>(info.total_pages), ranges.size(),
                static_cast<unsigned long long>(wholesale));
    for (const auto &r : ranges)
        std::printf("  %#014llx-%#014llx %8llu pages%s\n", static_cast<unsigned long long>(r.start),
                    static_cast<unsigned long long>(r.end),
                    static_cast<unsigned long long>((r.end - r.start) / info.page_size),
                    (r.flags & OOH_RANGE_WHOLESALE) ? "  wholesale" : "");
    return 0;
}

int cmdStats(ooh::Client &c, pid_t pid, bool json)
{
    struct ooh_stats s {};
    if (c.stats(pid, &s) < 0)
        return die("stats", c.error());
    if (json) {
        std::printf("{\"pid\": %d, \"backend\": \"%s\", \"epoch\": %llu, \"collects\": %llu, "
                    "\"pages_reported\": %llu, \"pages_wholesale\": %llu, "
                    "\"last_collect_ns\": %llu, \"last_collect_pages\": %llu, "
                    "\"tracked_bytes\": %llu, \"alive\": %s}\n",
                    pid, s.backend, (unsigned long long)s.epoch, (unsigned long long)s.collects,
                    (unsigned long long)s.pages_reported, (unsigned long long)s.pages_wholesale,
                    (unsigned long long)s.last_collect_ns, (unsigned long long)s.last_collect_pages,
                    (unsigned long long)s.tracked_bytes, s.alive ? "true" : "false");
        return 0;
    }
    std::printf("pid %d (%s)\n  backend          %s\n  epoch            %llu\n"
                "  collects         %llu\n  pages reported   %llu (%llu wholesale)\n"
                "  last collect     %llu pages in %.3f ms\n  tracked memory   %.1f MiB\n",
                pid, s.alive ? "alive" : "exited", s.backend, (unsigned long long)s.epoch,
                (unsigned long long)s.collects, (unsigned long long)s.pages_reported,
                (unsigned long long)s.pages_wholesale, (unsigned long long)s.last_collect_pages,
                s.last_collect_ns / 1e6, s.tracked_bytes / 1048576.0);
    return 0;
}

int cmdWatch(ooh::Client &c, pid_t pid, const Args &a)
{
    bool tracked_here = false;
    struct ooh_stats s {};
    if (c.stats(pid, &s) < 0) {
        if (c.track(pid, a.backend.empty() ? nullptr : a.backend.c_str()) < 0)
            return die("watch", c.error());
        tracked_here = true;
    } else {
        std::vector<ooh_range> discarded; // start a fresh epoch
        if (c.collect(pid, discarded) < 0)
            return die("watch", c.error());
    }
    std::signal(SIGINT, onInterrupt);
    std::signal(SIGTERM, onInterrupt);
    std::printf("%10s %12s %14s %10s %12s\n", "time [s]", "dirty pages", "pages/s", "ranges",
                "MiB/s");
    std::fflush(stdout);
    auto start = std::chrono::steady_clock::now();
    auto last = start;
    uint64_t total = 0;
    std::vector<ooh_range> ranges;
    int rc = 0;
    while (!g_interrupted) {
        std::this_thread::sleep_for(std::chrono::duration<double>(a.interval));
        if (g_interrupted)
            break;
        ooh_collect_info info{};
        if (c.collect(pid, ranges, &info) < 0) {
            rc = die("watch", c.error());
            break;
        }
        auto now = std::chrono::steady_clock::now();
        double dt = std::chrono::duration<double>(now - last).count();
        double t = std::chrono::duration<double>(now - start).count();
        last = now;
        total += info.total_pages;
        std::printf("%10.1f %12llu %14.0f %10zu %12.2f\n", t,
                    static_cast<unsigned long long>(info.total_pages), info.total_pages / dt,
                    ranges.size(), info.total_pages * info.page_size / dt / 1048576.0);
        std::fflush(stdout);
    }
    std::printf("total: %llu dirty pages reported\n", static_cast<unsigned long long>(total));
    if (tracked_here)
        c.untrack(pid);
    return rc;
}

} // namespace

int main(int argc, char **argv)
{
    const char *socket_path = nullptr;
    static const struct option opts[] = {
        {"socket", required_argument, nullptr, 's'},
        {"help", no_argument, nullptr, 'h'},
        {},
    };
    int opt;
    // '+': stop at the command; its options are parsed per command.
    while ((opt = getopt_long(argc, argv, "+s:h", opts, nullptr)) != -1) {
        switch (opt) {
        case 's': socket_path = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    std::string cmd = argv[optind];
    // Subcommands that connect on their own (checkpoint, migrate) see --socket too.
    if (socket_path)
        ::setenv(OOH_SOCKET_ENV, socket_path, 1);
    if (cmd == "checkpoint")
        return ooh::runCheckpoint(argc - optind, argv + optind);
    if (cmd == "migrate")
        return ooh::runMigrate(argc - optind, argv + optind);
    Args a;
    std::string err;
    if (!parseCommandArgs(argc - optind - 1, argv + optind + 1, &a, &err))
        return die(cmd.c_str(), err + " (see oohctl --help)", 2);

    static const struct {
        const char *name;
        size_t pids;
    } commands[] = {{"backends", 0}, {"track", 1}, {"collect", 1},
                    {"untrack", 1},  {"stats", 1}, {"watch", 1}};
    const auto *known = std::find_if(std::begin(commands), std::end(commands),
                                     [&](const auto &c) { return cmd == c.name; });
    if (known == std::end(commands))
        return die("usage", "unknown command '" + cmd + "' (see oohctl --help)", 2);
    if (a.positional.size() != known->pids)
        return die(cmd.c_str(), known->pids ? "expects one PID" : "takes no arguments", 2);
    pid_t pid = 0;
    if (known->pids && !parsePid(a.positional[0].c_str(), &pid))
        return die(cmd.c_str(), "invalid PID '" + a.positional[0] + "'", 2);

    ooh::Client c;
    if (c.connect(socket_path) < 0)
        return die("connect", c.error());
    if (cmd == "backends")
        return cmdBackends(c);
    if (cmd == "track") {
        if (c.track(pid, a.backend.empty() ? nullptr : a.backend.c_str()) < 0)
            return die("track", c.error());
        return 0;
    }
    if (cmd == "untrack")
        return c.untrack(pid) < 0 ? die("untrack", c.error()) : 0;
    if (cmd == "collect")
        return cmdCollect(c, pid, a.json);
    if (cmd == "stats")
        return cmdStats(c, pid, a.json);
    return cmdWatch(c, pid, a);
}

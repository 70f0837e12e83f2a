// SPDX-License-Identifier: Apache-2.0
// `oohctl checkpoint`: runs the patched criu (criu-plugin/) through rounds of
// `criu pre-dump --ooh`, each one an increment on the previous, until the
// set of pages written between rounds stops shrinking, falls under a
// threshold or a round limit is reached; then `criu dump --ooh` freezes the
// tree for the final, smallest increment. Prints per round the pages
// written, the dirty rate and the freeze time (CRIU's --display-stats).
#include "checkpoint.h"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <getopt.h>
#include <optional>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

constexpr const char *kCmd = "oohctl checkpoint";

struct Options {
    pid_t pid = 0;
    std::string dir;
    std::string criu;
    std::string pluginDir;
    std::string socket;
    unsigned maxRounds = 8;
    unsigned long threshold = 256;  // pages
    unsigned minShrinkPct = 10;
    unsigned intervalMs = 0;
    bool restore = false;
    bool leaveRunning = false;
    std::vector<std::string> criuArgs;
};

struct RoundStats {
    unsigned long pagesWritten = 0;
    unsigned long pagesSkipped = 0;  // "in parent"
    unsigned long frozenUs = 0;
    unsigned long freezingUs = 0;
    double wallSec = 0;
};

void usage(FILE *out)
{
    std::fprintf(out,
        "Usage: oohctl checkpoint -t PID -D DIR [OPTIONS] [-- CRIU_ARGS...]\n"
        "\n"
        "Checkpoints the process tree of PID into DIR with as short a final freeze as\n"
        "possible: CRIU pre-dumps (DIR/1, DIR/2, ...) run while the tree keeps going,\n"
        "each saving only the pages written since the previous one (oohd tracks them,\n"
        "no soft-dirty needed), until that set converges; then the final dump\n"
        "(DIR/dump) freezes the tree and saves the rest. Restore with\n"
        "`criu restore -D DIR/dump` (or --restore here).\n"
        "\n"
        "Options:\n"
        "  -t, --tree PID           root of the process tree to checkpoint\n"
        "  -D, --images-dir DIR     where the rounds' image directories go\n"
        "      --criu PATH          patched criu (default: the build tree's, then\n"
        "                           LIBEXECDIR/ooh/criu, then criu from PATH)\n"
        "  -L, --libdir DIR         where ooh_plugin.so is (default: the build tree's,\n"
        "                           else the one the patched criu was built with,\n"
        "                           LIBDIR/ooh/criu)\n"
        "  -s, --socket PATH        oohd's socket (default $OOH_SOCKET or\n"
        "                           /run/oohd/oohd.sock)\n"
        "  -n, --max-rounds N       at most N pre-dumps (default 8)\n"
        "      --threshold PAGES    stop pre-dumping once a round writes at most\n"
        "                           PAGES pages (default 256)\n"
        "      --min-shrink PCT     stop once a round writes not at least PCT %% fewer\n"
        "                           pages than the one before (default 10)\n"
        "      --interval MS        wait MS milliseconds between rounds (default 0)\n"
        "  -R, --leave-running      let the tree run after the final dump\n"
        "      --restore            restore DIR/dump afterwards (detached) as a check\n"
        "  -h, --help               show this help\n"
        "Arguments after -- go to every criu invocation (e.g. --shell-job).\n"
        "\n"
        "Per round it prints the pages written, the rate at which the tree dirtied\n"
        "pages since the previous round, and how long CRIU kept the tree frozen.\n");
}

std::string selfDir()
{
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n <= 0)
        return {};
    buf[n] = '\0';
    std::string p(buf);
    return p.substr(0, p.rfind('/'));
}

bool isExecutable(const std::string &p)
{
    return !p.empty() && access(p.c_str(), X_OK) == 0;
}

bool exists(const std::string &p)
{
    struct stat st;
    return stat(p.c_str(), &st) == 0;
}

// The patched criu: the build tree's (oohctl/../criu-plugin/criu), the
// installed one (bin/../libexec/ooh/criu), else criu from PATH.
std::string defaultCriu()
{
    std::string self = selfDir();
    for (const std::string &p : {self + "/../criu-plugin/criu", self + "/../libexec/ooh/criu"})
        if (isExecutable(p))
            return p;
    return "criu";
}

std::string defaultPluginDir()
{
    std::string dir = selfDir() + "/../criu-plugin";
    return exists(dir + "/ooh_plugin.so") ? dir : std::string();
}

bool parseUnsigned(const char *s, unsigned long *out)
{
    char *end = nullptr;
    errno = 0;
    unsigned long v = std::strtoul(s, &end, 10);
    if (errno || !end || *end || end == s)
        return false;
    *out = v;
    return true;
}

// Runs argv, its stdout into stdoutPath if given; returns the exit status
// (or 128 + signal), -errno if it could not run.
int run(const std::vector<std::string> &argv, const std::string &stdoutPath = {})
{
    std::fflush(stdout);  // or the child would print our buffered lines again
    pid_t child = fork();
    if (child < 0)
        return -errno;
    if (child == 0) {
        if (!stdoutPath.empty() && !std::freopen(stdoutPath.c_str(), "w", stdout)) {
            std::fprintf(stderr, "%s: can't write %s: %s\n", kCmd, stdoutPath.c_str(),
                         std::strerror(errno));
            _exit(127);
        }
        std::vector<char *> args;
        for (const auto &a : argv)
            args.push_back(const_cast<char *>(a.c_str()));
        args.push_back(nullptr);
        execvp(args[0], args.data());
        std::fprintf(stderr, "%s: can't run %s: %s\n", kCmd, args[0], std::strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(child, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

// CRIU's --display-stats lines (printed on its stdout).
std::optional<RoundStats> readStats(const std::string &log)
{
    std::ifstream in(log);
    if (!in)
        return std::nullopt;
    RoundStats st;
    bool found = false;
    std::string line;
    auto field = [&](const char *key, unsigned long *out) {
        auto pos = line.find(key);
        if (pos == std::string::npos)
            return;
        *out = std::strtoul(line.c_str() + pos + std::strlen(key), nullptr, 10);
        found = true;
    };
    while (std::getline(in, line)) {
        field("Freezing time: ", &st.freezingUs);
        field("Frozen time: ", &st.frozenUs);
        field("Memory pages skipped from parent: ", &st.pagesSkipped);
        field("Memory pages written: ", &st.pagesWritten);
    }
    if (!found)
        return std::nullopt;
    return st;
}

std::vector<std::string> criuCommand(const Options &o, const char *action, const std::string &dir)
{
    std::vector<std::string> argv{o.criu, action, "-D", dir, "-o", std::string(action) + ".log",
                                  "--display-stats"};
    if (std::strcmp(action, "restore") != 0) {
        argv.insert(argv.end(), {"-t", std::to_string(o.pid), "--ooh"});
    }
    if (!o.pluginDir.empty())
        argv.insert(argv.end(), {"-L", o.pluginDir});
    argv.insert(argv.end(), o.criuArgs.begin(), o.criuArgs.end());
    return argv;
}

// One criu pre-dump or dump into dir; prints its line.
int runRound(const Options &o, const char *action, const std::string &dir,
             const std::string &parent, const char *label, RoundStats *out)
{
    if (mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) {
        std::fprintf(stderr, "%s: can't create %s: %s\n", kCmd, dir.c_str(), std::strerror(errno));
        return 1;
    }
    auto argv = criuCommand(o, action, dir);
    if (!parent.empty())
        argv.insert(argv.end(), {"--prev-images-dir", parent});
    if (std::strcmp(action, "dump") == 0 && o.leaveRunning)
        argv.push_back("--leave-running");

    auto t0 = std::chrono::steady_clock::now();
    std::string statsFile = dir + "/" + action + ".stats";
    int rc = run(argv, statsFile);
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::string log = dir + "/" + action + ".log";
    if (rc != 0) {
        std::fprintf(stderr, "%s: criu %s failed (%s %d); see %s\n", kCmd, action,
                     rc < 0 ? "error" : "status", rc, log.c_str());
        return 1;
    }
    auto st = readStats(statsFile);
    if (!st) {
        std::fprintf(stderr, "%s: no statistics in %s\n", kCmd, statsFile.c_str());
        return 1;
    }
    st->wallSec = wall;
    *out = *st;
    std::printf("%-8s %10lu pages written (%7.1f MiB), %10lu in parent, frozen %8.2f ms, "
                "criu %.2f s\n",
                label, st->pagesWritten, st->pagesWritten * 4096.0 / (1 << 20), st->pagesSkipped,
                st->frozenUs / 1000.0, wall);
    std::fflush(stdout);
    return 0;
}

int parseArgs(int argc, char **argv, Options *o)
{
    enum { kCriu = 1000, kThreshold, kMinShrink, kInterval, kRestore };
    static const option longOpts[] = {
        {"tree", required_argument, nullptr, 't'},
        {"images-dir", required_argument, nullptr, 'D'},
        {"criu", required_argument, nullptr, kCriu},
        {"libdir", required_argument, nullptr, 'L'},
        {"socket", required_argument, nullptr, 's'},
        {"max-rounds", required_argument, nullptr, 'n'},
        {"threshold", required_argument, nullptr, kThreshold},
        {"min-shrink", required_argument, nullptr, kMinShrink},
        {"interval", required_argument, nullptr, kInterval},
        {"leave-running", no_argument, nullptr, 'R'},
        {"restore", no_argument, nullptr, kRestore},
        {"help", no_argument, nullptr, 'h'},
        {},
    };
    optind = 1;
    int c;
    unsigned long v;
    while ((c = getopt_long(argc, argv, "+t:D:L:s:n:Rh", longOpts, nullptr)) != -1) {
        switch (c) {
        case 't':
            if (!parseUnsigned(optarg, &v) || v == 0) {
                std::fprintf(stderr, "%s: bad pid '%s'\n", kCmd, optarg);
                return 2;
            }
            o->pid = pid_t(v);
            break;
        case 'D': o->dir = optarg; break;
        case kCriu: o->criu = optarg; break;
        case 'L': o->pluginDir = optarg; break;
        case 's': o->socket = optarg; break;
        case 'n':
            if (!parseUnsigned(optarg, &v) || v == 0 || v > 1000) {
                std::fprintf(stderr, "%s: --max-rounds wants 1..1000\n", kCmd);
                return 2;
            }
            o->maxRounds = unsigned(v);
            break;
        case kThreshold:
            if (!parseUnsigned(optarg, &v)) {
                std::fprintf(stderr, "%s: bad --threshold '%s'\n", kCmd, optarg);
                return 2;
            }
            o->threshold = v;
            break;
        case kMinShrink:
            if (!parseUnsigned(optarg, &v) || v > 100) {
                std::fprintf(stderr, "%s: --min-shrink wants 0..100\n", kCmd);
                return 2;
            }
            o->minShrinkPct = unsigned(v);
            break;
        case kInterval:
            if (!parseUnsigned(optarg, &v)) {
                std::fprintf(stderr, "%s: bad --interval '%s'\n", kCmd, optarg);
                return 2;
            }
            o->intervalMs = unsigned(v);
            break;
        case 'R': o->leaveRunning = true; break;
        case kRestore: o->restore = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    for (int i = optind; i < argc; i++)
        o->criuArgs.push_back(argv[i]);
    if (!o->pid || o->dir.empty()) {
        std::fprintf(stderr, "%s: -t PID and -D DIR are required (see --help)\n", kCmd);
        return 2;
    }
    if (o->restore && o->leaveRunning) {
        std::fprintf(stderr, "%s: --restore needs the tree gone: drop --leave-running\n", kCmd);
        return 2;
    }
    return -1;
}

} // namespace

int runCheckpoint(int argc, char **argv)
{
    Options o;
    int rc = parseArgs(argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (o.criu.empty())
        o.criu = defaultCriu();
    if (o.pluginDir.empty())
        o.pluginDir = defaultPluginDir();
    // criu resolves -L after moving into the images directory.
    if (!o.pluginDir.empty()) {
        char *abs = realpath(o.pluginDir.c_str(), nullptr);
        if (!abs) {
            std::fprintf(stderr, "%s: plugin directory %s: %s\n", kCmd, o.pluginDir.c_str(),
                         std::strerror(errno));
            return 1;
        }
        o.pluginDir = abs;
        std::free(abs);
    }
    if (!o.socket.empty())
        setenv("OOH_SOCKET", o.socket.c_str(), 1);
    if (mkdir(o.dir.c_str(), 0700) < 0 && errno != EEXIST) {
        std::fprintf(stderr, "%s: can't create %s: %s\n", kCmd, o.dir.c_str(), std::strerror(errno));
        return 1;
    }

    std::printf("checkpointing pid %d into %s with %s\n", int(o.pid), o.dir.c_str(), o.criu.c_str());
    std::string parent;
    unsigned long prevPages = 0;
    auto prevStart = std::chrono::steady_clock::now();
    unsigned round = 0;
    for (round = 1; round <= o.maxRounds; round++) {
        auto start = std::chrono::steady_clock::now();
        std::string name = std::to_string(round);
        RoundStats st;
        std::string label = "pre " + name;
        if (runRound(o, "pre-dump", o.dir + "/" + name, parent, label.c_str(), &st))
            return 1;
        if (round > 1) {
            double sec = std::chrono::duration<double>(start - prevStart).count();
            std::printf("         dirty rate %.0f pages/s since the previous round\n",
                        sec > 0 ? st.pagesWritten / sec : 0.0);
        }
        prevStart = start;
        parent = "../" + name;

        const char *why = nullptr;
        if (round > 1 && st.pagesWritten <= o.threshold)
            why = "under the threshold";
        else if (round > 1 && st.pagesWritten * 100 > prevPages * (100 - o.minShrinkPct))
            why = "the dirty set stopped shrinking";
        else if (round == o.maxRounds)
            why = "round limit";
        prevPages = st.pagesWritten;
        if (why) {
            std::printf("converged after %u pre-dumps (%s)\n", round, why);
            break;
        }
        if (o.intervalMs)
            std::this_thread::sleep_for(std::chrono::milliseconds(o.intervalMs));
    }

    RoundStats fin;
    if (runRound(o, "dump", o.dir + "/dump", parent, "dump", &fin))
        return 1;
    std::printf("final dump: tree frozen for %.2f ms, %lu pages written; images in %s/dump\n",
                fin.frozenUs / 1000.0, fin.pagesWritten, o.dir.c_str());

    if (o.restore) {
        // The dumped tree must be gone (reaped by its parent) before its
        // pids can be restored.
        std::string proc = "/proc/" + std::to_string(o.pid);
        for (int i = 0; i < 200 && exists(proc); i++)
            std::this_thread::sleep_for(std::chrono::milliseconds(25));
        if (exists(proc)) {
            std::fprintf(stderr, "%s: pid %d still exists after the dump: can't restore it here\n",
                         kCmd, int(o.pid));
            return 1;
        }
        std::vector<std::string> argv{o.criu, "restore", "-D", o.dir + "/dump", "-o",
                                      "restore.log", "--restore-detached"};
        if (!o.pluginDir.empty())
            argv.insert(argv.end(), {"-L", o.pluginDir});
        argv.insert(argv.end(), o.criuArgs.begin(), o.criuArgs.end());
        auto t0 = std::chrono::steady_clock::now();
        int r = run(argv, o.dir + "/dump/restore.stats");
        double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (r != 0) {
            std::fprintf(stderr, "%s: restore failed (status %d); see %s/dump/restore.log\n", kCmd,
                         r, o.dir.c_str());
            return 1;
        }
        std::printf("restored pid %d in %.2f s\n", int(o.pid), sec);
    }
    return 0;
}

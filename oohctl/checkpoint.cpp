// SPDX-License-Identifier: Apache-2.0
// `oohctl checkpoint`: runs the patched criu (criu-plugin/) through rounds of
// `criu pre-dump --ooh`, each one an increment on the previous, until the
// dirty set converges (convergence.h: under a threshold, or stopped
// shrinking) or the round limit is hit; then `criu dump --ooh` freezes the
// tree for the final, smallest increment. Prints per round the pages
// written, the dirty rate and the freeze time (CRIU's --display-stats).
// Every step (each criu run, the verify command) has a deadline
// (criu_step.h); a killed or failed step leaves the target running, never
// stopped or frozen (target_tree.h).
#include "checkpoint.h"

#include "convergence.h"
#include "criu_step.h"
#include "target_tree.h"
#include "unique_fd.h"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <getopt.h>
#include <set>
#include <string>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace ooh {

namespace {

constexpr const char *kCmd = kCheckpointCmd;

struct Options {
    pid_t pid = 0;
    std::string dir;
    std::string criu;
    std::string pluginDir;
    std::string socket;
    ConvergencePolicy policy; // --max-rounds, --threshold, --min-shrink
    unsigned intervalMs = 0;
    unsigned long stepTimeoutSec = 300;
    bool restore = false;
    bool leaveRunning = false;
    std::string verifyCommand;
    std::vector<std::string> criuArgs;
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
                 "      --step-timeout SEC   deadline of each step (every criu run, the verify\n"
                 "                           command; default 300): a step still running then\n"
                 "                           is killed and named with the last line it logged,\n"
                 "                           the tree is left running, and oohctl exits 1\n"
                 "      --restore            restore DIR/dump afterwards (detached, as a new\n"
                 "                           process) as a check\n"
                 "      --verify-command CMD after --restore, run `sh -c CMD` with\n"
                 "                           OOH_RESTORED_PID and OOH_IMAGES_DIR set; exit 0\n"
                 "                           means the restored tree is right, and its last\n"
                 "                           output line is printed as `restore verified: LINE`\n"
                 "  -h, --help               show this help\n"
                 "Arguments after -- go to every criu invocation (e.g. --shell-job).\n"
                 "\n"
                 "Per round it prints the pages written, the rate at which the tree dirtied\n"
                 "pages since the previous round, and how long CRIU kept the tree frozen.\n"
                 "CRIU logs at -v4 into each round's directory (pre-dump.log, dump.log,\n"
                 "restore.log). Exit status: 0, 1 if a step failed or timed out (named on\n"
                 "stderr), 2 for bad usage, 128+N if interrupted by signal N.\n");
}

bool exists(const std::string &p)
{
    struct stat st;
    return stat(p.c_str(), &st) == 0;
}

// criu at -v4: when a step hangs, its last log line says where.
std::vector<std::string> criuCommand(const Options &o, const char *action, const std::string &dir)
{
    std::vector<std::string> argv{
        o.criu, action, "-D", dir, "-o", std::string(action) + ".log", "-v4", "--display-stats"};
    if (std::strcmp(action, "restore") != 0)
        argv.insert(argv.end(), {"-t", std::to_string(o.pid), "--ooh"});
    if (!o.pluginDir.empty())
        argv.insert(argv.end(), {"-L", o.pluginDir});
    argv.insert(argv.end(), o.criuArgs.begin(), o.criuArgs.end());
    return argv;
}

// One criu pre-dump or dump into dir, named `name` ("pre-dump 2", "dump")
// in messages; prints its line, labelled `label`. Returns oohctl's exit
// status on failure, with the tree released.
int runRound(const Options &o, TargetTree &tree, const char *action, const std::string &name,
             const std::string &dir, const std::string &parent, const char *label, RoundStats *out)
{
    if (mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) {
        std::fprintf(stderr, "%s: %s: can't create %s: %s\n", kCmd, name.c_str(), dir.c_str(),
                     std::strerror(errno));
        return 1;
    }
    Step step{name,
              criuCommand(o, action, dir),
              dir + "/" + action + ".stats",
              dir + "/" + action + ".log",
              {}};
    if (!parent.empty())
        step.argv.insert(step.argv.end(), {"--prev-images-dir", parent});
    if (std::strcmp(action, "dump") == 0 && o.leaveRunning)
        step.argv.push_back("--leave-running");

    tree.snapshot();
    auto t0 = std::chrono::steady_clock::now();
    StepOutcome res = runStep(step, o.stepTimeoutSec);
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (res.status != 0) {
        int rc = reportFailure(step, res, o.stepTimeoutSec);
        tree.release(name.c_str());
        return rc;
    }
    auto st = readCriuStats(step.stdoutPath);
    if (!st) {
        std::fprintf(stderr, "%s: %s: no statistics in %s\n", kCmd, name.c_str(),
                     step.stdoutPath.c_str());
        return 1;
    }
    st->wallSec = wall;
    *out = *st;
    std::printf("%-8s %10lu pages written (%7.1f MiB), %10lu in parent, frozen %8.2f ms, "
                "criu %.2f s\n",
                label, st->pagesWritten,
                st->pagesWritten * static_cast<double>(::sysconf(_SC_PAGESIZE)) / (1 << 20),
                st->pagesSkipped, st->frozenUs / 1000.0, wall);
    std::fflush(stdout);
    return 0;
}

// --restore: criu restore -d of DIR/dump, then --verify-command.
int restoreAndVerify(const Options &o, const ooh::UniqueFD &original)
{
    // The dumped tree must be gone (reaped by its parent) before its pids
    // can be restored.
    std::string proc = "/proc/" + std::to_string(o.pid);
    for (int i = 0; i < 200 && exists(proc); i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(25));
    if (exists(proc)) {
        std::fprintf(stderr,
                     "%s: restore: pid %d still exists after the dump: can't restore it "
                     "here\n",
                     kCmd, int(o.pid));
        return 1;
    }
    std::string dir = o.dir + "/dump";
    Step step{"restore",
              criuCommand(o, "restore", dir),
              dir + "/restore.stats",
              dir + "/restore.log",
              {}};
    step.argv.push_back("--restore-detached");
    auto t0 = std::chrono::steady_clock::now();
    StepOutcome res = runStep(step, o.stepTimeoutSec);
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (res.status != 0) {
        int rc = reportFailure(step, res, o.stepTimeoutSec);
        // A tree half restored is nobody's: criu's own children went with
        // its process group, restored ones that left it are killed here.
        if (res.expired || res.interruptedBy)
            if (exists(proc) && ::kill(o.pid, SIGKILL) == 0)
                std::fprintf(stderr, "%s: restore: killed the half-restored pid %d\n", kCmd,
                             int(o.pid));
        return rc;
    }
    // Same pid, new process: the original (its pidfd) must be gone.
    bool originalGone = original.isValid() &&
                        syscall(SYS_pidfd_send_signal, original.get(), 0, nullptr, 0) < 0 &&
                        errno == ESRCH;
    if (!originalGone || ::kill(o.pid, 0) < 0) {
        std::fprintf(stderr, "%s: restore: criu restore succeeded but pid %d is %s; see %s\n", kCmd,
                     int(o.pid), originalGone ? "not running" : "still the original",
                     step.logPath.c_str());
        return 1;
    }
    std::printf("restored pid %d in %.2f s\n", int(o.pid), sec);
    std::fflush(stdout);
    if (o.verifyCommand.empty()) {
        std::printf("restore not verified (no --verify-command)\n");
        return 0;
    }

    Step verify{"verify",
                {"/bin/sh", "-c", o.verifyCommand},
                dir + "/verify.out",
                dir + "/verify.out",
                {{"OOH_RESTORED_PID", std::to_string(o.pid)}, {"OOH_IMAGES_DIR", dir}}};
    res = runStep(verify, o.stepTimeoutSec);
    std::string last = lastLogLine(verify.stdoutPath);
    if (res.status == 0) {
        std::printf("restore verified: %s\n",
                    last.empty() ? "(the command said nothing)" : last.c_str());
        return 0;
    }
    if (res.expired || res.interruptedBy)
        return reportFailure(verify, res, o.stepTimeoutSec);
    std::fprintf(stderr, "%s: verify failed: `%s` exited with status %d: %s\n", kCmd,
                 o.verifyCommand.c_str(), res.status, last.empty() ? "(no output)" : last.c_str());
    return 1;
}

int parseArgs(int argc, char **argv, Options *o)
{
    enum { kCriu = 1000, kThreshold, kMinShrink, kInterval, kRestore, kStepTimeout, kVerify };
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
        {"step-timeout", required_argument, nullptr, kStepTimeout},
        {"restore", no_argument, nullptr, kRestore},
        {"verify-command", required_argument, nullptr, kVerify},
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
            o->policy.maxRounds = unsigned(v);
            break;
        case kThreshold:
            if (!parseUnsigned(optarg, &v)) {
                std::fprintf(stderr, "%s: bad --threshold '%s'\n", kCmd, optarg);
                return 2;
            }
            o->policy.thresholdPages = v;
            break;
        case kMinShrink:
            if (!parseUnsigned(optarg, &v) || v > 100) {
                std::fprintf(stderr, "%s: --min-shrink wants 0..100\n", kCmd);
                return 2;
            }
            o->policy.minShrinkPct = unsigned(v);
            break;
        case kInterval:
            if (!parseUnsigned(optarg, &v)) {
                std::fprintf(stderr, "%s: bad --interval '%s'\n", kCmd, optarg);
                return 2;
            }
            o->intervalMs = unsigned(v);
            break;
        case kStepTimeout:
            // Up to a day: a deadline must still come.
            if (!parseUnsigned(optarg, &v) || v == 0 || v > 86400) {
                std::fprintf(stderr, "%s: --step-timeout wants 1..86400 seconds\n", kCmd);
                return 2;
            }
            o->stepTimeoutSec = v;
            break;
        case 'R': o->leaveRunning = true; break;
        case kRestore: o->restore = true; break;
        case kVerify: o->verifyCommand = optarg; break;
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
    if (!o->verifyCommand.empty() && !o->restore) {
        std::fprintf(stderr, "%s: --verify-command checks a restore: add --restore\n", kCmd);
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
    if (!prepareLocalCriu(kCmd, &o.pluginDir, o.socket, &o.dir))
        return 1;

    // The target, held by a pidfd: after the restore, the process at its pid
    // must be a new one.
    ooh::UniqueFD original(static_cast<int>(syscall(SYS_pidfd_open, o.pid, 0)));
    if (!original.isValid()) {
        std::fprintf(stderr, "%s: pid %d: %s\n", kCmd, int(o.pid), std::strerror(errno));
        return 1;
    }
    TargetTree tree(o.pid, kCmd);

    std::printf("checkpointing pid %d into %s with %s\n", int(o.pid), o.dir.c_str(),
                o.criu.c_str());
    std::string parent;
    std::vector<uint64_t> written; // pages per pre-dump
    auto prevStart = std::chrono::steady_clock::now();
    // Ends: decideConvergence() says RoundLimit at o.policy.maxRounds at the latest.
    for (unsigned round = 1;; round++) {
        auto start = std::chrono::steady_clock::now();
        std::string name = std::to_string(round);
        RoundStats st;
        std::string label = "pre " + name;
        if (int rc = runRound(o, tree, "pre-dump", "pre-dump " + name, o.dir + "/" + name, parent,
                              label.c_str(), &st))
            return rc;
        if (round > 1) {
            double sec = std::chrono::duration<double>(start - prevStart).count();
            std::printf("         dirty rate %.0f pages/s since the previous round\n",
                        sec > 0 ? st.pagesWritten / sec : 0.0);
        }
        prevStart = start;
        parent = "../" + name;

        written.push_back(st.pagesWritten);
        ConvergenceDecision d = decideConvergence(written, o.policy);
        if (d.verdict != ConvergenceVerdict::Continue) {
            std::printf("%s\n", convergenceMessage(d, o.policy).c_str());
            break;
        }
        if (o.intervalMs)
            std::this_thread::sleep_for(std::chrono::milliseconds(o.intervalMs));
    }

    RoundStats fin;
    if (int rc = runRound(o, tree, "dump", "dump", o.dir + "/dump", parent, "dump", &fin))
        return rc;
    std::printf("final dump: tree frozen for %.2f ms, %lu pages written; images in %s/dump\n",
                fin.frozenUs / 1000.0, fin.pagesWritten, o.dir.c_str());
    if (o.restore)
        return restoreAndVerify(o, original);
    return 0;
}

} // namespace ooh

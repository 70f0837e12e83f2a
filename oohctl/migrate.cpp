// SPDX-License-Identifier: Apache-2.0
// `oohctl migrate`: moves a running process tree to another host. Each round
// starts `criu page-server` on the destination (through --dest-exec: ssh,
// nsenter, ip netns exec) and runs `criu pre-dump --ooh --page-server`
// here, so the pages go straight to the destination's images while the tree
// keeps running; oohd tracks what it writes, so each round sends only the
// pages written since the one before. When the dirty set converges (the
// policy of `oohctl checkpoint`, convergence.h), `criu dump --ooh
// --leave-stopped` sends the rest; the other images (a few KiB) follow
// through a tar pipe, `criu restore -d` starts the tree on the destination,
// and only then is the stopped source killed: a failure anywhere before
// leaves the source running. Reports per round the pages sent and the dirty
// rate, and at the end the downtime (source frozen -> destination running).
//
// With --post-copy the final dump sends no pages: `criu dump --lazy-pages`
// writes the other images here (the pagemaps of the pre-dumps, fetched back
// from the destination, give it its parent chain: what did not change since
// is restored there from those rounds) and then serves the pages written
// since the last round from the stopped source. `criu restore --lazy-pages`
// starts the tree on the destination at once, and `criu lazy-pages` there
// fetches those pages through userfaultfd, on fault and in the background.
// The source is killed once its dump says all pages went.
#include "migrate.h"

#include "convergence.h"
#include "criu_step.h"
#include "target_tree.h"
#include "unique_fd.h"

#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <sstream>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace ooh {

namespace {

constexpr const char *kCmd = kMigrateCmd;
using Clock = std::chrono::steady_clock;

struct Options {
    pid_t pid = 0;
    std::string to; // the page server's address on the destination
    unsigned long port = 27027;
    std::string dir;                   // here: every round's non-page images and CRIU logs
    std::string destDir;               // there: every round's pages, then the final images
    std::vector<std::string> destExec; // prefix that runs a command there
    std::string criu, destCriu, pluginDir, socket;
    ConvergencePolicy policy;
    bool oneShot = false; // --max-rounds 0: one dump, no --ooh
    unsigned intervalMs = 0;
    unsigned long stepTimeoutSec = 300;
    bool tcpEstablished = false;
    std::string switchCommand, afterRestore;
    std::string postCopy; // the source's address for the lazy pages; empty: none
    std::vector<std::string> criuArgs;
};

void usage(FILE *out)
{
    std::fprintf(out,
                 "Usage: oohctl migrate -t PID --to ADDR -D DIR --dest-dir DIR --dest-exec CMD\n"
                 "                      [OPTIONS] [-- CRIU_ARGS...]\n"
                 "\n"
                 "Moves the process tree of PID to another host with a short freeze: the\n"
                 "destination runs `criu page-server` on ADDR for each round, and CRIU\n"
                 "pre-dumps (--ooh: oohd tracks the written pages, no soft-dirty needed) send\n"
                 "the pages there while the tree keeps running, each round only those written\n"
                 "since the one before, until that set converges. Then the final dump stops the\n"
                 "tree and sends the rest, the other images follow, `criu restore` starts the\n"
                 "tree on the destination, and the stopped source is killed. If any step fails,\n"
                 "the source tree is left running.\n"
                 "\n"
                 "Options:\n"
                 "  -t, --tree PID           root of the process tree to migrate\n"
                 "      --to ADDR            the destination's address (its page server listens\n"
                 "                           there)\n"
                 "      --port N             the page server's TCP port (default 27027)\n"
                 "  -D, --images-dir DIR     here: each round's other images and CRIU's logs\n"
                 "      --dest-dir DIR       on the destination: the pages of each round\n"
                 "                           (DIR/1, DIR/2, ...) and the final images (DIR/dump)\n"
                 "      --dest-exec CMD      command prefix that runs a command on the\n"
                 "                           destination, words split at spaces, the command\n"
                 "                           following as arguments (\"nsenter -t PID -n -m -p\",\n"
                 "                           \"ip netns exec NAME\")\n"
                 "      --criu PATH          patched criu here (default: the build tree's, then\n"
                 "                           LIBEXECDIR/ooh/criu, then criu from PATH)\n"
                 "      --dest-criu PATH     criu on the destination (default: as --criu)\n"
                 "  -L, --libdir DIR         where ooh_plugin.so is (as oohctl checkpoint)\n"
                 "  -s, --socket PATH        oohd's socket (default $OOH_SOCKET or\n"
                 "                           /run/oohd/oohd.sock)\n"
                 "  -n, --max-rounds N       at most N pre-dumps (default 8); 0 migrates in one\n"
                 "                           shot: a full dump, no pre-dump, no --ooh\n"
                 "      --threshold PAGES    stop pre-dumping once a round sends at most PAGES\n"
                 "                           pages (default 256)\n"
                 "      --min-shrink PCT     stop once a round sends not at least PCT %% fewer\n"
                 "                           pages than the one before (default 10)\n"
                 "      --interval MS        wait MS milliseconds between rounds (default 0)\n"
                 "      --tcp-established    keep established TCP connections (criu dump and\n"
                 "                           restore --tcp-established): the connection's local\n"
                 "                           address must be the destination's by the restore\n"
                 "      --switch-command CMD run `sh -c CMD` here after the final dump, before\n"
                 "                           the restore, with the source stopped (e.g. give the\n"
                 "                           destination the service address); non-zero exit\n"
                 "                           fails the migration\n"
                 "      --after-restore CMD  run `sh -c CMD` here once the destination runs the\n"
                 "                           tree (e.g. send the service's traffic there: before,\n"
                 "                           the destination would reset connections it has not\n"
                 "                           restored yet); counted in the downtime\n"
                 "      --post-copy ADDR     post-copy: the final dump sends no pages, the\n"
                 "                           stopped source serves them on ADDR (its own\n"
                 "                           address, the --port) while the tree already runs\n"
                 "                           on the destination (criu dump, lazy-pages and\n"
                 "                           restore --lazy-pages: userfaultfd there); the\n"
                 "                           source is killed once every page went\n"
                 "      --step-timeout SEC   deadline of each step (default 300)\n"
                 "  -h, --help               show this help\n"
                 "Arguments after -- go to the pre-dumps, the dump and the restore (e.g.\n"
                 "--network-lock nftables).\n"
                 "\n"
                 "Prints per round the pages sent and the rate at which the tree dirtied pages\n"
                 "since the round before; at the end the downtime, from the start of the final\n"
                 "freeze to the restored tree running on the destination, and a `summary` line\n"
                 "of key=value pairs. Exit status: 0, 1 if a step failed or timed out (named\n"
                 "on stderr, the source left running), 2 for bad usage, 128+N if interrupted\n"
                 "by signal N.\n");
}

bool pathExists(const std::string &p)
{
    struct stat st;
    return stat(p.c_str(), &st) == 0;
}

std::vector<std::string> splitWords(const std::string &s)
{
    std::istringstream in(s);
    std::vector<std::string> out;
    std::string w;
    while (in >> w)
        out.push_back(w);
    return out;
}

// cmd, run on the destination.
std::vector<std::string> onDest(const Options &o, std::vector<std::string> cmd)
{
    std::vector<std::string> argv = o.destExec;
    argv.insert(argv.end(), cmd.begin(), cmd.end());
    return argv;
}

// Pages are counted in the system's pages (16 KiB on some arm64 kernels).
uint64_t pageSize()
{
    static const uint64_t size = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    return size;
}

double mib(uint64_t pages) { return pages * static_cast<double>(pageSize()) / (1 << 20); }

double secondsSince(Clock::time_point t)
{
    return std::chrono::duration<double>(Clock::now() - t).count();
}

class Migration {
public:
    explicit Migration(const Options &o) : o_(o), tree_(o.pid, kCmd) {}

    int run();

private:
    int prepareDestination();
    int round(const char *action, const std::string &name, const std::string &sub,
              const std::string &parent, RoundStats *out);
    int startPageServer(const std::string &name, const std::string &sub, const std::string &parent);
    void stopPageServer(const std::string &name, const std::string &sub);
    int transferImages(uint64_t *bytes);
    int sendImagesAndSwitch(uint64_t *imageBytes);
    int restore(double *sec);
    int fetchPagemaps(size_t rounds);
    int postCopy(const std::string &parent, size_t rounds, uint64_t prePages);
    bool lazyServerListening(const std::string &log) const;
    void abortLazyDump();
    void killSource();
    Step userCommand(const char *name, const std::string &cmd, const char *out) const;
    StepOutcome runUserCommand(const Step &step) const;
    int failed(const Step &step, const StepOutcome &out, bool touchedTree);

    std::string here(const std::string &sub) const { return o_.dir + "/" + sub; }
    std::string there(const std::string &sub) const { return o_.destDir + "/" + sub; }

    const Options &o_;
    TargetTree tree_;
    bool dumped_ = false;  // the final dump succeeded: the source is stopped
    std::thread lazyDump_; // --post-copy: the final dump, serving the pages
};

// A failed step: named with its diagnosis, the source continued.
// touchedTree: a criu run had the tree (it may have left it stopped).
int Migration::failed(const Step &step, const StepOutcome &out, bool touchedTree)
{
    int rc = reportFailure(step, out, o_.stepTimeoutSec);
    if (lazyDump_.joinable())
        abortLazyDump();
    if (touchedTree)
        tree_.release(step.name.c_str());
    std::fprintf(stderr, "%s: stopped at %s; the source tree was not migrated%s\n", kCmd,
                 step.name.c_str(),
                 o_.tcpEstablished && dumped_
                     ? " (its TCP connections stay in CRIU's repair mode and network lock)"
                     : "");
    return rc;
}

int Migration::prepareDestination()
{
    std::vector<std::string> cmd{"mkdir", "-p", there("dump")};
    for (unsigned r = 1; !o_.oneShot && r <= o_.policy.maxRounds; r++)
        cmd.push_back(there(std::to_string(r)));
    Step step{
        "prepare destination", onDest(o_, cmd), here("prepare.out"), here("prepare.out"), {}, kCmd};
    StepOutcome res = runStep(step, o_.stepTimeoutSec);
    if (res.status != 0)
        return failed(step, res, false);
    return 0;
}

// The page server of one round: `criu page-server -d` returns once it
// listens, and serves one connection (the round's criu) then exits.
int Migration::startPageServer(const std::string &name, const std::string &sub,
                               const std::string &parent)
{
    std::vector<std::string> cmd{o_.destCriu,
                                 "page-server",
                                 "-D",
                                 there(sub),
                                 "--address",
                                 o_.to,
                                 "--port",
                                 std::to_string(o_.port),
                                 "-d",
                                 "--pidfile",
                                 there(sub) + "/page-server.pid",
                                 "-o",
                                 "page-server.log",
                                 "-v4"};
    if (!parent.empty())
        cmd.insert(cmd.end(), {"--prev-images-dir", parent});
    Step step{"page server for " + name,
              onDest(o_, cmd),
              here(sub) + "/page-server.out",
              there(sub) + "/page-server.log",
              {},
              kCmd};
    StepOutcome res = runStep(step, o_.stepTimeoutSec);
    if (res.status != 0)
        return failed(step, res, false);
    return 0;
}

// After a failed round: the page server may still wait for its connection.
void Migration::stopPageServer(const std::string &name, const std::string &sub)
{
    Step read{"page server pid",
              onDest(o_, {"cat", there(sub) + "/page-server.pid"}),
              here(sub) + "/page-server.pid",
              here(sub) + "/page-server.pid",
              {},
              kCmd};
    if (runStep(read, 30).status != 0)
        return;
    std::string pid = readFirstLine(read.stdoutPath);
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos)
        return;
    Step kill{"stop page server",
              onDest(o_, {"kill", pid}),
              here(sub) + "/page-server.kill",
              here(sub) + "/page-server.kill",
              {},
              kCmd};
    if (runStep(kill, 30).status == 0)
        std::fprintf(stderr, "%s: %s: stopped the destination's page server (pid %s)\n", kCmd,
                     name.c_str(), pid.c_str());
}

// One pre-dump or the final dump, its pages to this round's page server.
int Migration::round(const char *action, const std::string &name, const std::string &sub,
                     const std::string &parent, RoundStats *out)
{
    std::string dir = here(sub);
    if (mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) {
        std::fprintf(stderr, "%s: %s: can't create %s: %s\n", kCmd, name.c_str(), dir.c_str(),
                     std::strerror(errno));
        tree_.release(name.c_str());
        return 1;
    }
    if (int rc = startPageServer(name, sub, parent))
        return rc;

    bool final = std::strcmp(action, "dump") == 0;
    std::vector<std::string> argv{o_.criu,
                                  action,
                                  "-t",
                                  std::to_string(o_.pid),
                                  "-D",
                                  dir,
                                  "-o",
                                  std::string(action) + ".log",
                                  "-v4",
                                  "--display-stats",
                                  "--page-server",
                                  "--address",
                                  o_.to,
                                  "--port",
                                  std::to_string(o_.port)};
    if (!o_.oneShot)
        argv.push_back("--ooh");
    if (!o_.pluginDir.empty())
        argv.insert(argv.end(), {"-L", o_.pluginDir});
    if (!parent.empty())
        argv.insert(argv.end(), {"--prev-images-dir", parent});
    if (final) {
        // Stopped, not killed: the source resumes if the restore fails.
        argv.push_back("--leave-stopped");
        if (o_.tcpEstablished)
            argv.push_back("--tcp-established");
    }
    argv.insert(argv.end(), o_.criuArgs.begin(), o_.criuArgs.end());
    Step step{name, argv, dir + "/" + action + ".stats", dir + "/" + action + ".log", {}, kCmd};

    tree_.snapshot();
    auto t0 = Clock::now();
    StepOutcome res = runStep(step, o_.stepTimeoutSec);
    double wall = secondsSince(t0);
    if (res.status != 0) {
        int rc = failed(step, res, true);
        stopPageServer(name, sub);
        return rc;
    }
    auto st = readCriuStats(step.stdoutPath);
    if (!st) {
        std::fprintf(stderr, "%s: %s: no statistics in %s\n", kCmd, name.c_str(),
                     step.stdoutPath.c_str());
        if (final)
            tree_.release(name.c_str());
        return 1;
    }
    st->wallSec = wall;
    *out = *st;
    dumped_ = final;
    return 0;
}

// The final dump's images other than pages (those are on the destination
// already), through a tar pipe into the destination's DIR/dump.
int Migration::transferImages(uint64_t *bytes)
{
    namespace fs = std::filesystem;
    std::error_code ec;
    *bytes = 0;
    for (const auto &e : fs::directory_iterator(here("dump"), ec)) {
        std::string n = e.path().filename();
        if (e.is_regular_file(ec) && n.ends_with(".img"))
            *bytes += e.file_size(ec);
    }
    // Post-copy: the parent link too (the page servers made it otherwise).
    std::string pipe = o_.postCopy.empty()
                           ? "cd \"$1\" && shift && tar -cf - --no-recursion *.img | \"$@\""
                           : "cd \"$1\" && shift && tar -cf - --no-recursion *.img "
                             "$(ls -d parent 2>/dev/null) | \"$@\"";
    std::vector<std::string> argv{"/bin/sh", "-c", pipe, "sh", here("dump")};
    for (const auto &w : onDest(o_, {"tar", "-C", there("dump"), "-xf", "-"}))
        argv.push_back(w);
    Step step{"image transfer",          argv, here("dump/transfer.out"),
              here("dump/transfer.out"), {},   kCmd};
    StepOutcome res = runStep(step, o_.stepTimeoutSec);
    if (res.status != 0)
        return failed(step, res, true);
    return 0;
}

int Migration::restore(double *sec)
{
    std::vector<std::string> cmd{o_.destCriu, "restore",     "-D",  there("dump"),    "-d",
                                 "-o",        "restore.log", "-v4", "--display-stats"};
    if (!o_.postCopy.empty())
        cmd.push_back("--lazy-pages");
    if (!o_.pluginDir.empty())
        cmd.insert(cmd.end(), {"-L", o_.pluginDir});
    if (o_.tcpEstablished)
        cmd.push_back("--tcp-established");
    cmd.insert(cmd.end(), o_.criuArgs.begin(), o_.criuArgs.end());
    Step step{"restore", onDest(o_, cmd), here("dump/restore.stats"), there("dump/restore.log"), {},
              kCmd};
    auto t0 = Clock::now();
    StepOutcome res = runStep(step, o_.stepTimeoutSec);
    *sec = secondsSince(t0);
    if (res.status != 0)
        return failed(step, res, true);
    return 0;
}

// The pre-dumps' pagemaps (a few KiB; their pages stay there) back from the
// destination into DIR/1, DIR/2, ...: the local final dump finds its parent
// chain in them. Waits for each round's page server to have written them.
int Migration::fetchPagemaps(size_t rounds)
{
    // Gone or a zombie (nobody may reap there): done. criu's comm has no space.
    std::string script = "cd \"$1\" && shift && for r; do p=$(cat \"$r/page-server.pid\") && "
                         "while s=$(cut -d' ' -f3 \"/proc/$p/stat\" 2>/dev/null) && "
                         "[ \"$s\" != Z ]; do sleep 0.02; done || exit 1; "
                         "done && tar -cf - $(for r; do echo \"$r\"/pagemap-*.img; done)";
    std::vector<std::string> cmd{"sh", "-c", script, "sh", o_.destDir};
    for (size_t r = 1; r <= rounds; r++)
        cmd.push_back(std::to_string(r));
    std::string pipe = "cd \"$1\" && shift && \"$@\" | tar -xf -";
    std::vector<std::string> argv{"/bin/sh", "-c", pipe, "sh", o_.dir};
    for (const auto &w : onDest(o_, cmd))
        argv.push_back(w);
    Step step{"pagemap fetch",           argv, here("dump/pagemaps.out"),
              here("dump/pagemaps.out"), {},   kCmd};
    StepOutcome res = runStep(step, o_.stepTimeoutSec);
    if (res.status != 0)
        return failed(step, res, false);
    return 0;
}

// The lazy dump logged that it serves the pages and its socket listens
// (oohctl runs in the source's network namespace, as its criu does).
bool Migration::lazyServerListening(const std::string &log) const
{
    if (lastLogLine(log, "Starting lazy pages server").empty())
        return false;
    char port[16];
    std::snprintf(port, sizeof port, ":%04lX ", o_.port);
    for (const char *table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
        std::ifstream in(table);
        std::string line;
        while (std::getline(in, line)) {
            std::istringstream f(line);
            std::string sl, local, remote, state;
            if (f >> sl >> local >> remote >> state && state == "0A" &&
                (local + " ").ends_with(port))
                return true;
        }
    }
    return false;
}

// A failure after the lazy dump began: a connection closed at once ends its
// page server (the pages stay with the source), then the dump returns.
void Migration::abortLazyDump()
{
    sockaddr_storage ss{};
    socklen_t len = 0;
    auto *in4 = reinterpret_cast<sockaddr_in *>(&ss);
    auto *in6 = reinterpret_cast<sockaddr_in6 *>(&ss);
    if (inet_pton(AF_INET, o_.postCopy.c_str(), &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(uint16_t(o_.port));
        len = sizeof *in4;
    } else if (inet_pton(AF_INET6, o_.postCopy.c_str(), &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(uint16_t(o_.port));
        len = sizeof *in6;
    }
    if (len) {
        UniqueFD sk(socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (sk.isValid())
            (void)connect(sk.get(), reinterpret_cast<sockaddr *>(&ss), len);
    }
    lazyDump_.join(); // at the latest at its step deadline
}

// --post-copy, after the pre-dumps: the lazy dump, the restore while it
// serves the pages, then the wait for the last page.
int Migration::postCopy(const std::string &parent, size_t rounds, uint64_t prePages)
{
    std::string dir = here("dump");
    if (mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) {
        std::fprintf(stderr, "%s: dump: can't create %s: %s\n", kCmd, dir.c_str(),
                     std::strerror(errno));
        return 1;
    }
    if (rounds && fetchPagemaps(rounds))
        return 1;
    std::vector<std::string> argv{o_.criu,
                                  "dump",
                                  "-t",
                                  std::to_string(o_.pid),
                                  "-D",
                                  dir,
                                  "-o",
                                  "dump.log",
                                  "-v4",
                                  "--ooh",
                                  "--lazy-pages",
                                  "--address",
                                  o_.postCopy,
                                  "--port",
                                  std::to_string(o_.port),
                                  "--leave-stopped"};
    if (o_.oneShot)
        argv.erase(argv.begin() + 9); // no --ooh
    if (!o_.pluginDir.empty())
        argv.insert(argv.end(), {"-L", o_.pluginDir});
    if (!parent.empty())
        argv.insert(argv.end(), {"--prev-images-dir", parent});
    if (o_.tcpEstablished)
        argv.push_back("--tcp-established");
    argv.insert(argv.end(), o_.criuArgs.begin(), o_.criuArgs.end());
    Step dump{"dump", argv, dir + "/dump.out", dir + "/dump.log", {}, kCmd};
    std::string log = dir + "/dump.log";
    std::filesystem::remove(log);

    // SIGINT, SIGTERM and SIGHUP stay pending for the steps' signalfds
    // (runStep) while the dump runs in its thread: this thread would
    // otherwise die of them and leave the source stopped and serving.
    struct SignalGuard {
        sigset_t set, old;
        SignalGuard()
        {
            sigemptyset(&set);
            for (int sig : {SIGINT, SIGTERM, SIGHUP})
                sigaddset(&set, sig);
            pthread_sigmask(SIG_BLOCK, &set, &old);
        }
        ~SignalGuard() { pthread_sigmask(SIG_SETMASK, &old, nullptr); }
    } guard;
    tree_.snapshot();
    auto dumpStart = Clock::now();
    StepOutcome dumpRes;
    std::atomic<bool> dumpDone{false};
    lazyDump_ = std::thread([&] {
        dumpRes = runStep(dump, o_.stepTimeoutSec);
        dumpDone = true;
    });
    // Its images are written once its page server listens.
    while (!dumpDone && !lazyServerListening(log))
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    if (dumpDone) {
        lazyDump_.join();
        if (dumpRes.status == 0)
            dumpRes.status = 1; // it ended without serving: not a migration
        return failed(dump, dumpRes, true);
    }
    auto served = Clock::now();
    dumped_ = true;

    // The log's clock starts with criu: the freeze begins when it seizes
    // the first task. Its pages: the pagemap lines.
    double seizedSec = 0;
    uint64_t dumpPages = 0, lazyPages = 0;
    {
        std::ifstream in(log);
        std::string line;
        while (std::getline(in, line)) {
            auto at = line.find("Pagemap generated: ");
            unsigned long n, l;
            if (!seizedSec && line.find(") Seized task ") != std::string::npos &&
                std::sscanf(line.c_str(), "(%lf)", &seizedSec) != 1)
                seizedSec = 0;
            if (at != std::string::npos &&
                std::sscanf(line.c_str() + at, "Pagemap generated: %lu pages (%lu lazy)", &n, &l) ==
                    2) {
                dumpPages += n;
                lazyPages += l;
            }
        }
    }
    auto freezeStart = dumpStart + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(seizedSec));
    std::printf("dump     %10llu pages (%8.1f MiB), %llu of them left on the source for "
                "post-copy; images written in %.3f s\n",
                (unsigned long long)dumpPages, mib(dumpPages), (unsigned long long)lazyPages,
                std::chrono::duration<double>(served - dumpStart).count());

    uint64_t imageBytes = 0;
    if (int rc = sendImagesAndSwitch(&imageBytes))
        return rc;
    std::vector<std::string> lazyCmd{o_.destCriu,
                                     "lazy-pages",
                                     "--page-server",
                                     "--address",
                                     o_.postCopy,
                                     "--port",
                                     std::to_string(o_.port),
                                     "-D",
                                     there("dump"),
                                     "-d",
                                     "-o",
                                     "lazy-pages.log",
                                     "-v4"};
    Step lazy{"lazy-pages daemon",
              onDest(o_, lazyCmd),
              here("dump/lazy-pages.out"),
              there("dump/lazy-pages.log"),
              {},
              kCmd};
    StepOutcome lazyRes = runStep(lazy, o_.stepTimeoutSec);
    if (lazyRes.status != 0)
        return failed(lazy, lazyRes, true);
    double restoreSec = 0;
    if (int rc = restore(&restoreSec))
        return rc;
    bool afterFailed = false;
    if (!o_.afterRestore.empty()) {
        Step after = userCommand("after-restore command", o_.afterRestore, "dump/after.out");
        StepOutcome res = runUserCommand(after);
        if (res.status != 0) {
            // Reported; the restored tree still needs its pages from the
            // source, so the transfer goes on.
            afterFailed = true;
            reportFailure(after, res, o_.stepTimeoutSec);
            std::fprintf(stderr,
                         "%s: the tree runs on the destination, but the after-restore "
                         "command failed\n",
                         kCmd);
        }
    }
    auto running = Clock::now();
    std::printf("restored on the destination in %.3f s; its pages follow from the source\n",
                restoreSec);
    std::fflush(stdout);

    // The source goes once the destination has every page.
    lazyDump_.join();
    auto transferred = Clock::now();
    if (dumpRes.status != 0) {
        reportFailure(dump, dumpRes, o_.stepTimeoutSec);
        std::fprintf(stderr,
                     "%s: the post-copy transfer failed: the tree restored on the destination "
                     "lacks pages; the source is left stopped (pid %d)\n",
                     kCmd, int(o_.pid));
        return 1;
    }
    killSource();
    double downtimeMs = std::chrono::duration<double, std::milli>(running - freezeStart).count();
    double upperMs = std::chrono::duration<double, std::milli>(running - dumpStart).count();
    double transferMs = std::chrono::duration<double, std::milli>(transferred - dumpStart).count();
    uint64_t bytes = (prePages + dumpPages) * pageSize() + imageBytes;
    std::printf("post-copy finished %.1f ms after the start of the final dump; the source is "
                "killed\n",
                transferMs);
    std::printf("downtime %.1f ms (source frozen -> destination running; at most %.1f ms from "
                "the start of the final dump); %.1f MiB sent in %zu round%s\n",
                downtimeMs, upperMs, bytes / 1048576.0, rounds + 1, rounds ? "s" : "");
    std::printf("summary rounds=%zu pre_dump_pages=%llu dump_pages=%llu lazy_pages=%llu "
                "image_bytes=%llu bytes_sent=%llu restore_ms=%.1f downtime_ms=%.1f "
                "downtime_max_ms=%.1f post_copy_done_ms=%.1f\n",
                rounds, (unsigned long long)prePages, (unsigned long long)dumpPages,
                (unsigned long long)lazyPages, (unsigned long long)imageBytes,
                (unsigned long long)bytes, restoreSec * 1000, downtimeMs, upperMs, transferMs);
    std::fflush(stdout);
    return afterFailed ? 1 : 0;
}

// After the final dump: the other images to the destination, then the
// --switch-command, which both modes run before the restore.
int Migration::sendImagesAndSwitch(uint64_t *imageBytes)
{
    auto t0 = Clock::now();
    if (int rc = transferImages(imageBytes))
        return rc;
    std::printf("images   %10.1f KiB of other images sent in %.3f s\n", *imageBytes / 1024.0,
                secondsSince(t0));
    if (!o_.switchCommand.empty()) {
        Step sw = userCommand("switch command", o_.switchCommand, "dump/switch.out");
        StepOutcome res = runUserCommand(sw);
        if (res.status != 0)
            return failed(sw, res, true);
    }
    return 0;
}

// `sh -c cmd` here, its output into `out` (reportFailure shows its last
// line).
Step Migration::userCommand(const char *name, const std::string &cmd, const char *out) const
{
    return {name, {"/bin/sh", "-c", cmd}, here(out), here(out), {}, kCmd};
}

// Runs it; on failure says its last line of output.
StepOutcome Migration::runUserCommand(const Step &step) const
{
    StepOutcome res = runStep(step, o_.stepTimeoutSec);
    std::string last = lastLogLine(step.stdoutPath);
    if (res.status != 0 && !last.empty())
        std::fprintf(stderr, "%s: %s said: %s\n", kCmd, step.name.c_str(), last.c_str());
    return res;
}

// The destination runs the tree: the stopped source goes.
void Migration::killSource()
{
    UniqueFD root(static_cast<int>(syscall(SYS_pidfd_open, o_.pid, 0)));
    for (pid_t p : tree_.processes())
        ::kill(p, SIGKILL);
    if (root.isValid()) {
        pollfd fd = {root.get(), POLLIN, 0};
        poll(&fd, 1, 10000);
    }
}

int Migration::run()
{
    std::printf("migrating pid %d to %s:%lu (%s) with %s\n", int(o_.pid), o_.to.c_str(), o_.port,
                o_.oneShot ? "one shot" : "iterative pre-dumps with --ooh", o_.criu.c_str());
    if (int rc = prepareDestination())
        return rc;

    std::string parent;
    std::vector<uint64_t> sent; // pages per pre-dump
    uint64_t totalPages = 0;
    auto prevStart = Clock::now();
    auto printRound = [](const char *label, const RoundStats &st) {
        std::printf("%-8s %10lu pages sent (%8.1f MiB), %10lu in parent, frozen %8.2f ms, "
                    "criu %.2f s\n",
                    label, st.pagesWritten, mib(st.pagesWritten), st.pagesSkipped,
                    st.frozenUs / 1000.0, st.wallSec);
    };
    // Ends: decideConvergence() says RoundLimit at maxRounds at the latest.
    for (unsigned r = 1; !o_.oneShot; r++) {
        auto start = Clock::now();
        std::string name = std::to_string(r), label = "pre " + name;
        RoundStats st;
        if (int rc = round("pre-dump", "pre-dump " + name, name, parent, &st))
            return rc;
        printRound(label.c_str(), st);
        if (r > 1) {
            double sec = std::chrono::duration<double>(start - prevStart).count();
            std::printf("         dirty rate %.0f pages/s since the previous round\n",
                        sec > 0 ? st.pagesWritten / sec : 0.0);
        }
        std::fflush(stdout);
        prevStart = start;
        parent = "../" + name;
        totalPages += st.pagesWritten;
        sent.push_back(st.pagesWritten);
        ConvergenceDecision d = decideConvergence(sent, o_.policy);
        if (d.verdict != ConvergenceVerdict::Continue) {
            std::printf("%s\n", convergenceMessage(d, o_.policy).c_str());
            break;
        }
        if (o_.intervalMs)
            std::this_thread::sleep_for(std::chrono::milliseconds(o_.intervalMs));
    }

    if (!o_.postCopy.empty())
        return postCopy(parent, sent.size(), totalPages);
    RoundStats fin;
    auto dumpStart = Clock::now();
    if (int rc = round("dump", "dump", "dump", parent, &fin))
        return rc;
    auto dumpEnd = Clock::now();
    printRound("dump", fin);
    totalPages += fin.pagesWritten;
    // The tree stopped when CRIU began freezing it and stays stopped
    // (--leave-stopped) until it is killed below.
    auto frozenFor = std::chrono::microseconds(fin.frozenUs + fin.freezingUs);
    auto freezeStart = dumpEnd - frozenFor < dumpStart ? dumpStart : dumpEnd - frozenFor;

    uint64_t imageBytes = 0;
    if (int rc = sendImagesAndSwitch(&imageBytes))
        return rc;
    double restoreSec = 0;
    if (int rc = restore(&restoreSec))
        return rc;
    killSource();
    if (!o_.afterRestore.empty()) {
        // The tree runs on the destination and the source is gone: a
        // failure here can't undo the migration, only be reported.
        Step after = userCommand("after-restore command", o_.afterRestore, "dump/after.out");
        StepOutcome res = runUserCommand(after);
        if (res.status != 0) {
            reportFailure(after, res, o_.stepTimeoutSec);
            std::fprintf(stderr,
                         "%s: the tree runs on the destination, but the after-restore "
                         "command failed\n",
                         kCmd);
            return 1;
        }
    }
    auto running = Clock::now();

    double downtimeMs = std::chrono::duration<double, std::milli>(running - freezeStart).count();
    double upperMs = std::chrono::duration<double, std::milli>(running - dumpStart).count();
    uint64_t bytes = totalPages * pageSize() + imageBytes;
    std::printf("restored on the destination in %.3f s; the source is killed\n", restoreSec);
    std::printf("downtime %.1f ms (source frozen -> destination running; at most %.1f ms from "
                "the start of the final dump); %.1f MiB sent in %zu round%s\n",
                downtimeMs, upperMs, bytes / 1048576.0, sent.size() + 1, sent.empty() ? "" : "s");
    std::printf("summary rounds=%zu pre_dump_pages=%llu dump_pages=%lu image_bytes=%llu "
                "bytes_sent=%llu dump_frozen_ms=%.1f restore_ms=%.1f downtime_ms=%.1f "
                "downtime_max_ms=%.1f\n",
                sent.size(), (unsigned long long)(totalPages - fin.pagesWritten), fin.pagesWritten,
                (unsigned long long)imageBytes, (unsigned long long)bytes,
                (fin.frozenUs + fin.freezingUs) / 1000.0, restoreSec * 1000, downtimeMs, upperMs);
    std::fflush(stdout);
    return 0;
}

int parseArgs(int argc, char **argv, Options *o)
{
    enum {
        kTo = 1000,
        kPort,
        kDestDir,
        kDestExec,
        kCriu,
        kDestCriu,
        kThreshold,
        kMinShrink,
        kInterval,
        kStepTimeout,
        kTcp,
        kSwitch,
        kAfterRestore,
        kPostCopy,
    };
    static const option longOpts[] = {
        {"tree", required_argument, nullptr, 't'},
        {"to", required_argument, nullptr, kTo},
        {"port", required_argument, nullptr, kPort},
        {"images-dir", required_argument, nullptr, 'D'},
        {"dest-dir", required_argument, nullptr, kDestDir},
        {"dest-exec", required_argument, nullptr, kDestExec},
        {"criu", required_argument, nullptr, kCriu},
        {"dest-criu", required_argument, nullptr, kDestCriu},
        {"libdir", required_argument, nullptr, 'L'},
        {"socket", required_argument, nullptr, 's'},
        {"max-rounds", required_argument, nullptr, 'n'},
        {"threshold", required_argument, nullptr, kThreshold},
        {"min-shrink", required_argument, nullptr, kMinShrink},
        {"interval", required_argument, nullptr, kInterval},
        {"step-timeout", required_argument, nullptr, kStepTimeout},
        {"tcp-established", no_argument, nullptr, kTcp},
        {"switch-command", required_argument, nullptr, kSwitch},
        {"after-restore", required_argument, nullptr, kAfterRestore},
        {"post-copy", required_argument, nullptr, kPostCopy},
        {"help", no_argument, nullptr, 'h'},
        {},
    };
    optind = 1;
    int c;
    unsigned long v;
    while ((c = getopt_long(argc, argv, "+t:D:L:s:n:h", longOpts, nullptr)) != -1) {
        switch (c) {
        case 't':
            if (!parseUnsigned(optarg, &v) || v == 0 || v > 0x3fffffff) {
                std::fprintf(stderr, "%s: bad pid '%s'\n", kCmd, optarg);
                return 2;
            }
            o->pid = pid_t(v);
            break;
        case kTo: o->to = optarg; break;
        case kPort:
            if (!parseUnsigned(optarg, &v) || v == 0 || v > 65535) {
                std::fprintf(stderr, "%s: --port wants 1..65535\n", kCmd);
                return 2;
            }
            o->port = v;
            break;
        case 'D': o->dir = optarg; break;
        case kDestDir: o->destDir = optarg; break;
        case kDestExec: o->destExec = splitWords(optarg); break;
        case kCriu: o->criu = optarg; break;
        case kDestCriu: o->destCriu = optarg; break;
        case 'L': o->pluginDir = optarg; break;
        case 's': o->socket = optarg; break;
        case 'n':
            if (!parseUnsigned(optarg, &v) || v > 1000) {
                std::fprintf(stderr, "%s: --max-rounds wants 0..1000\n", kCmd);
                return 2;
            }
            o->oneShot = v == 0;
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
            if (!parseUnsigned(optarg, &v) || v > 3600000) {
                std::fprintf(stderr, "%s: bad --interval '%s'\n", kCmd, optarg);
                return 2;
            }
            o->intervalMs = unsigned(v);
            break;
        case kStepTimeout:
            if (!parseUnsigned(optarg, &v) || v == 0 || v > 86400) {
                std::fprintf(stderr, "%s: --step-timeout wants 1..86400 seconds\n", kCmd);
                return 2;
            }
            o->stepTimeoutSec = v;
            break;
        case kTcp: o->tcpEstablished = true; break;
        case kSwitch: o->switchCommand = optarg; break;
        case kAfterRestore: o->afterRestore = optarg; break;
        case kPostCopy: o->postCopy = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    for (int i = optind; i < argc; i++)
        o->criuArgs.push_back(argv[i]);
    // The destination is another host: here, the stopped source still
    // holds the pids the restore needs.
    if (!o->pid || o->to.empty() || o->dir.empty() || o->destDir.empty() || o->destExec.empty()) {
        std::fprintf(stderr,
                     "%s: -t PID, --to ADDR, -D DIR, --dest-dir DIR and --dest-exec CMD "
                     "are required (see --help)\n",
                     kCmd);
        return 2;
    }
    if (o->destDir[0] != '/') {
        std::fprintf(stderr, "%s: --dest-dir must be an absolute path on the destination\n", kCmd);
        return 2;
    }
    return -1;
}

// criu's lazy page server grows a pipe to its PIPE_MAX_SIZE: 8 pages' worth
// of 40-byte pipe buffers (819 pages of 4 KiB). Beyond fs.pipe-max-size
// that takes CAP_SYS_RESOURCE, which containers often drop from the
// bounding set; the series' patch 12 then fails the dump (stock criu went
// on, and the restored tree waited for pages that failed to "tee"). Said
// here before anything starts.
int checkPostCopyPipes()
{
    const unsigned long kNeeded = 8 * pageSize() / 40 * pageSize();
    unsigned long max = 0;
    std::ifstream("/proc/sys/fs/pipe-max-size") >> max;
    std::ifstream status("/proc/self/status");
    std::string line;
    unsigned long long capEff = 0;
    while (std::getline(status, line))
        if (line.starts_with("CapEff:"))
            capEff = std::strtoull(line.c_str() + 7, nullptr, 16);
    constexpr int kCapSysResource = 24;
    if (max >= kNeeded || (capEff >> kCapSysResource & 1))
        return 0;
    std::fprintf(stderr,
                 "%s: --post-copy: criu's lazy page server needs pipes of %lu bytes: "
                 "CAP_SYS_RESOURCE (missing here) or fs.pipe-max-size >= %lu (it is %lu)\n",
                 kCmd, kNeeded, kNeeded, max);
    return 1;
}

} // namespace

int runMigrate(int argc, char **argv)
{
    Options o;
    int rc = parseArgs(argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (o.criu.empty())
        o.criu = defaultCriu();
    // The destination's command runs elsewhere: no relative path there.
    if (o.criu.find('/') != std::string::npos) {
        if (char *abs = realpath(o.criu.c_str(), nullptr)) {
            o.criu = abs;
            std::free(abs);
        }
    }
    if (o.destCriu.empty())
        o.destCriu = o.criu;
    if (!prepareLocalCriu(kCmd, &o.pluginDir, o.socket, &o.dir))
        return 1;
    if (!o.postCopy.empty()) {
        if (int rc = checkPostCopyPipes())
            return rc;
    }
    if (!pathExists("/proc/" + std::to_string(o.pid))) {
        std::fprintf(stderr, "%s: pid %d: no such process\n", kCmd, int(o.pid));
        return 1;
    }
    Migration m(o);
    return m.run();
}

} // namespace ooh

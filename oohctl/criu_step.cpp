// SPDX-License-Identifier: Apache-2.0
// Running the steps of `oohctl checkpoint` and reading criu's output
// (criu_step.h).
#include "criu_step.h"

#include "unique_fd.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace ooh {

namespace {

// What a hung criu was waiting for, when its last log line says it.
const char *hintFor(const std::string &line)
{
    static const struct {
        const char *marker;
        const char *hint;
    } hints[] = {
        {"new_sp=", "compel was waiting for the hardware-breakpoint trap that ends its parasite; "
                    "a machine that does not deliver debug-register traps (many VMs) never sends "
                    "it: this criu has to be told to do without breakpoints there"},
        {"ooh:", "criu was in the ooh plugin, waiting for oohd: is oohd alive (see its log)?"},
        {"`ooh'", "criu was starting the ooh plugin, which waits for oohd: is oohd alive?"},
        {"freez", "criu was freezing the tree"},
        {"page-server", "criu was waiting for the page server"},
    };
    for (const auto &h : hints)
        if (line.find(h.marker) != std::string::npos)
            return h.hint;
    return nullptr;
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

bool isExecutable(const std::string &p) { return !p.empty() && access(p.c_str(), X_OK) == 0; }

bool exists(const std::string &p)
{
    struct stat st;
    return stat(p.c_str(), &st) == 0;
}

} // namespace

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

bool prepareLocalCriu(const char *cmd, std::string *pluginDir, const std::string &socket,
                      std::string *dir)
{
    if (pluginDir->empty())
        *pluginDir = defaultPluginDir();
    if (!pluginDir->empty()) {
        char *abs = realpath(pluginDir->c_str(), nullptr);
        if (!abs) {
            std::fprintf(stderr, "%s: plugin directory %s: %s\n", cmd, pluginDir->c_str(),
                         std::strerror(errno));
            return false;
        }
        *pluginDir = abs;
        std::free(abs);
    }
    if (!socket.empty())
        setenv("OOH_SOCKET", socket.c_str(), 1);
    if (mkdir(dir->c_str(), 0700) < 0 && errno != EEXIST) {
        std::fprintf(stderr, "%s: can't create %s: %s\n", cmd, dir->c_str(), std::strerror(errno));
        return false;
    }
    if (char *abs = realpath(dir->c_str(), nullptr)) {
        *dir = abs;
        std::free(abs);
    }
    return true;
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

std::string readFirstLine(const std::string &path)
{
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
}

std::string lastLogLine(const std::string &path, const char *needle)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return {};
    in.seekg(0, std::ios::end);
    std::streamoff size = in.tellg();
    in.seekg(size > 65536 ? size - 65536 : 0);
    std::string line, last;
    while (std::getline(in, line))
        if (line.find_first_not_of(" \t\r") != std::string::npos &&
            line.find(needle) != std::string::npos)
            last = line;
    return last;
}

StepOutcome runStep(const Step &step, unsigned long timeoutSec)
{
    StepOutcome out;
    sigset_t stopSigs, oldMask;
    sigemptyset(&stopSigs);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
        struct sigaction sa;
        // One our caller ignores (a background job's SIGINT) stays ignored.
        if (sigaction(sig, nullptr, &sa) == 0 && sa.sa_handler != SIG_IGN)
            sigaddset(&stopSigs, sig);
    }
    sigprocmask(SIG_BLOCK, &stopSigs, &oldMask);
    ooh::UniqueFD sigFd(signalfd(-1, &stopSigs, SFD_CLOEXEC | SFD_NONBLOCK));

    std::fflush(stdout); // or the child would print our buffered lines again
    pid_t child = fork();
    if (child < 0) {
        out.status = -errno;
        sigprocmask(SIG_SETMASK, &oldMask, nullptr);
        return out;
    }
    if (child == 0) {
        sigprocmask(SIG_SETMASK, &oldMask, nullptr);
        setpgid(0, 0);
        if (!step.stdoutPath.empty() && !std::freopen(step.stdoutPath.c_str(), "w", stdout)) {
            std::fprintf(stderr, "%s: can't write %s: %s\n", step.tool, step.stdoutPath.c_str(),
                         std::strerror(errno));
            _exit(127);
        }
        for (const auto &[k, v] : step.env)
            setenv(k.c_str(), v.c_str(), 1);
        std::vector<char *> args;
        for (const auto &a : step.argv)
            args.push_back(const_cast<char *>(a.c_str()));
        args.push_back(nullptr);
        execvp(args[0], args.data());
        std::fprintf(stderr, "%s: can't run %s: %s\n", step.tool, args[0], std::strerror(errno));
        _exit(127);
    }
    out.pid = child;
    setpgid(child, child); // also here: no window where killpg() misses it
    ooh::UniqueFD pidFd(static_cast<int>(syscall(SYS_pidfd_open, child, 0)));
    if (!pidFd.isValid()) {
        // Without a pidfd (Linux < 5.3) there is no bounded wait: refuse.
        out.status = -errno;
        killpg(child, SIGKILL);
        waitpid(child, nullptr, 0);
        sigprocmask(SIG_SETMASK, &oldMask, nullptr);
        return out;
    }

    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeoutSec);
    bool mustKill = false;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
        if (left <= 0) {
            out.expired = mustKill = true;
            break;
        }
        pollfd fds[2] = {{pidFd.get(), POLLIN, 0}, {sigFd.get(), POLLIN, 0}};
        int n = poll(fds, sigFd.isValid() ? 2 : 1, int(std::min<long long>(left, 60000)));
        if (n < 0 && errno != EINTR) {
            mustKill = true; // can't wait any more: the step must not outlive us
            break;
        }
        if (n > 0 && fds[0].revents)
            break;
        signalfd_siginfo si;
        if (n > 0 && fds[1].revents && read(sigFd.get(), &si, sizeof(si)) == sizeof(si)) {
            out.interruptedBy = int(si.ssi_signo);
            mustKill = true;
            break;
        }
    }
    if (mustKill) {
        std::string wchan = readFirstLine("/proc/" + std::to_string(child) + "/wchan");
        out.wchan = wchan.empty() || wchan == "0" ? "running" : "blocked in " + wchan;
        killpg(child, SIGKILL);
        // A process in uninterruptible sleep dies only when it wakes up: do
        // not wait for that forever either.
        pollfd fd = {pidFd.get(), POLLIN, 0};
        if (poll(&fd, 1, 10000) == 0) {
            std::fprintf(stderr, "%s: %s: pid %d does not die after SIGKILL (%s); left it\n",
                         step.tool, step.name.c_str(), int(child), out.wchan.c_str());
            sigprocmask(SIG_SETMASK, &oldMask, nullptr);
            out.status = 128 + SIGKILL;
            return out;
        }
    }
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    sigprocmask(SIG_SETMASK, &oldMask, nullptr);
    out.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return out;
}

int reportFailure(const Step &step, const StepOutcome &out, unsigned long timeoutSec)
{
    const char *kCmd = step.tool;
    const char *n = step.name.c_str();
    if (out.status < 0) {
        std::fprintf(stderr, "%s: %s: can't run %s: %s\n", kCmd, n, step.argv[0].c_str(),
                     std::strerror(-out.status));
        return 1;
    }
    if (!out.expired && !out.interruptedBy) {
        std::string err = lastLogLine(step.logPath, "Error");
        std::fprintf(stderr, "%s: %s failed: %s exited with status %d; see %s\n", kCmd, n,
                     step.argv[0].c_str(), out.status, step.logPath.c_str());
        if (!err.empty())
            std::fprintf(stderr, "%s: %s: its last error: %s\n", kCmd, n, err.c_str());
        return 1;
    }
    if (out.expired)
        std::fprintf(stderr,
                     "%s: %s did not finish within %lu s (--step-timeout): killed %s "
                     "(pid %d, %s)\n",
                     kCmd, n, timeoutSec, step.argv[0].c_str(), int(out.pid), out.wchan.c_str());
    else
        std::fprintf(stderr, "%s: %s interrupted by %s: killed %s (pid %d, %s)\n", kCmd, n,
                     strsignal(out.interruptedBy), step.argv[0].c_str(), int(out.pid),
                     out.wchan.c_str());
    std::string last = lastLogLine(step.logPath);
    if (last.empty()) {
        std::fprintf(stderr, "%s: %s: nothing in %s to say what it was waiting for\n", kCmd, n,
                     step.logPath.c_str());
    } else {
        std::fprintf(stderr, "%s: %s: the last line in %s:\n    %s\n", kCmd, n,
                     step.logPath.c_str(), last.c_str());
        if (const char *hint = hintFor(last))
            std::fprintf(stderr, "%s: %s: %s\n", kCmd, n, hint);
    }
    return out.interruptedBy ? 128 + out.interruptedBy : 1;
}

std::optional<RoundStats> readCriuStats(const std::string &path)
{
    std::ifstream in(path);
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

} // namespace ooh

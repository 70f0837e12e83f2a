// SPDX-License-Identifier: Apache-2.0
// oohd: the dirty-page tracking daemon. Parses flags, probes the backends,
// and serves clients until SIGTERM.
#include "backend.h"
#include "config.h"
#include "log.h"
#include "server.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <getopt.h>
#include <string>
#include <sys/resource.h>
#include <unistd.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace {

constexpr const char *kLog = "oohd";

void usage(FILE *out)
{
    std::fprintf(out,
                 "Usage: oohd [--socket PATH] [--foreground] [--log-level LEVEL]\n"
                 "            [--handshake-timeout MS] [--max-sessions-per-uid N]\n"
                 "\n"
                 "Tracks which pages of given processes were written since the last collect\n"
                 "and serves the dirty page sets to clients (oohctl, libooh, the CRIU plugin)\n"
                 "over a Unix socket.\n"
                 "\n"
                 "  -s, --socket PATH      listen on PATH (default %s, or $OOH_SOCKET);\n"
                 "                         ignored under systemd socket activation\n"
                 "  -f, --foreground       stay in the foreground (default: detach once ready)\n"
                 "  -l, --log-level LEVEL  error, warning, notice (default), info or debug\n"
                 "      --handshake-timeout MS\n"
                 "                         close a client that has not said Hello after MS\n"
                 "                         milliseconds (default %d; 0: never)\n"
                 "      --max-sessions-per-uid N\n"
                 "                         processes each user but root may track (default\n"
                 "                         %zu; the last %zu of %zu are kept for root)\n"
                 "      --probe            print what each backend found and exit\n"
                 "  -h, --help             show this help\n"
                 "  -V, --version          show the version\n"
                 "\n"
                 "Logs go to stderr, with syslog priority prefixes under journald.\n"
                 "Root may track any process; another user only one the kernel lets it\n"
                 "ptrace (libooh passes its /proc/PID/mem as the proof). A session serves\n"
                 "the user that tracked it, and root.\n"
                 "Each user but root may hold %zu connections; the last %zu of %zu are\n"
                 "kept for root.\n",
                 OOH_DEFAULT_SOCKET, ooh::ServerLimits{}.handshake_timeout_ms,
                 ooh::ServerLimits{}.max_sessions_per_uid, ooh::ServerLimits{}.session_root_reserve,
                 ooh::ServerLimits{}.max_sessions, ooh::ServerLimits{}.max_connections_per_uid,
                 ooh::ServerLimits{}.root_reserve, ooh::ServerLimits{}.max_connections);
}

// Forks; the parent waits until the child reports readiness through a pipe
// and exits with its status, so `oohd && oohctl ...` never races.
int detach(int *ready_fd)
{
    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) < 0)
        return -errno;
    pid_t child = ::fork();
    if (child < 0)
        return -errno;
    if (child > 0) {
        ::close(pipefd[1]);
        char status = 1;
        ssize_t n = ::read(pipefd[0], &status, 1);
        ::_exit(n == 1 && status == 0 ? 0 : 1);
    }
    ::close(pipefd[0]);
    ::setsid();
    if (::chdir("/") < 0) {
        // Not fatal: we only hold paths we were given.
    }
    int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
        ::dup2(devnull, STDIN_FILENO);
        ::close(devnull);
    }
    *ready_fd = pipefd[1];
    return 0;
}

// Every client connection and every tracked process holds fds: use all the
// kernel allows (systemd gives services a soft limit of 1024 and a hard one
// far above it). oohd execs nothing, so no child inherits the raised limit.
void raiseFdLimit()
{
    struct rlimit nofile;
    if (::getrlimit(RLIMIT_NOFILE, &nofile) < 0 || nofile.rlim_cur == nofile.rlim_max)
        return;
    rlim_t was = nofile.rlim_cur;
    nofile.rlim_cur = nofile.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &nofile) < 0) {
        OOH_LOG(kLog, Warning) << "cannot raise RLIMIT_NOFILE from " << was << ": "
                               << std::strerror(errno);
        return;
    }
    OOH_LOG(kLog, Info) << "RLIMIT_NOFILE raised from " << was << " to " << nofile.rlim_cur;
}

// A whole number in [min, max]; false otherwise.
bool parseNumber(const char *text, long min, long max, long *out)
{
    char *end = nullptr;
    errno = 0;
    long v = std::strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

constexpr long kMaxHandshakeTimeoutMs = 86400000L; // a day

} // namespace

int main(int argc, char **argv)
{
    std::string socket_path =
        std::getenv("OOH_SOCKET") ? std::getenv("OOH_SOCKET") : OOH_DEFAULT_SOCKET;
    bool foreground = false, probe_only = false;
    ooh::ServerLimits limits;
    static const struct option opts[] = {
        {"socket", required_argument, nullptr, 's'},
        {"foreground", no_argument, nullptr, 'f'},
        {"log-level", required_argument, nullptr, 'l'},
        {"probe", no_argument, nullptr, 'p'},
        {"handshake-timeout", required_argument, nullptr, 'T'},
        {"max-sessions-per-uid", required_argument, nullptr, 'U'},
        {"help", no_argument, nullptr, 'h'},
        {"version", no_argument, nullptr, 'V'},
        {},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "s:fl:hV", opts, nullptr)) != -1) {
        switch (opt) {
        case 's': socket_path = optarg; break;
        case 'f': foreground = true; break;
        case 'l': {
            ooh::log::Level level;
            if (!ooh::log::parseLevel(optarg, &level)) {
                std::fprintf(stderr,
                             "oohd: unknown log level '%s' (use error, warning, notice, "
                             "info or debug)\n",
                             optarg);
                return 2;
            }
            ooh::log::setLevel(level);
            break;
        }
        case 'p': probe_only = true; break;
        case 'T': {
            long ms;
            if (!parseNumber(optarg, 0, kMaxHandshakeTimeoutMs, &ms)) {
                std::fprintf(stderr,
                             "oohd: --handshake-timeout takes milliseconds (0 to %ld), "
                             "not '%s'\n",
                             kMaxHandshakeTimeoutMs, optarg);
                return 2;
            }
            limits.handshake_timeout_ms = static_cast<int>(ms);
            break;
        }
        case 'U': {
            const long most = static_cast<long>(ooh::ServerLimits{}.max_sessions);
            long n;
            if (!parseNumber(optarg, 1, most, &n)) {
                std::fprintf(stderr,
                             "oohd: --max-sessions-per-uid takes a number from 1 to %ld, "
                             "not '%s'\n",
                             most, optarg);
                return 2;
            }
            limits.max_sessions_per_uid = static_cast<size_t>(n);
            break;
        }
        case 'h': usage(stdout); return 0;
        case 'V': std::printf("oohd %s\n", OOH_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        std::fprintf(stderr, "oohd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    raiseFdLimit();
    ooh::Server server(ooh::makeBackends(), limits);
    server.probeBackends();
    if (probe_only)
        return 0;

    int listen_fds = 0;
#ifdef HAVE_LIBSYSTEMD
    listen_fds = sd_listen_fds(1);
    if (listen_fds > 1) {
        OOH_LOG(kLog, Error) << "expected one socket from systemd, got " << listen_fds;
        return 1;
    }
#endif
    if (listen_fds == 1) {
        foreground = true; // systemd supervises us
#ifdef HAVE_LIBSYSTEMD
        auto r = server.adoptListener(SD_LISTEN_FDS_START);
        if (!r) {
            OOH_LOG(kLog, Error) << r.error().message;
            return 1;
        }
        OOH_LOG(kLog, Notice) << "using the socket passed by systemd";
#endif
    } else {
        auto r = server.listenOn(socket_path);
        if (!r) {
            OOH_LOG(kLog, Error) << r.error().message;
            return 1;
        }
    }

    int ready_fd = -1;
    if (!foreground) {
        int err = detach(&ready_fd);
        if (err < 0) {
            OOH_LOG(kLog, Error) << "cannot detach: " << std::strerror(-err);
            return 1;
        }
    }
#ifdef HAVE_LIBSYSTEMD
    sd_notify(0, "READY=1");
#endif
    if (ready_fd >= 0) {
        char ok = 0;
        ssize_t n = ::write(ready_fd, &ok, 1);
        (void)n;
        ::close(ready_fd);
    }
    auto r = server.run();
    if (!r) {
        OOH_LOG(kLog, Error) << r.error().message;
        return 1;
    }
    return 0;
}

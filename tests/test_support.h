// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the test suites: child processes driven over pipes,
// range containment checks, and the skip convention (exit code 77).
#pragma once

#include "page_range.h"
#include "writer_truth.h"

#include <cstdint>
#include <cstdio>
#include <string>
#include <sys/types.h>
#include <vector>

namespace ooh::test {

// Meson's "skipped" exit code; tests that cannot run here exit with it.
inline constexpr int kSkip = 77;

// Exits with kSkip and a reason unless running as root.
void requireRootOrSkip(const char *suite);
// main() of a GoogleTest executable that needs root: skips without it.
int runRootTests(int argc, char **argv, const char *suite);

// A child process with its stdin and stdout connected to us.
class ChildProcess {
public:
    // argv[0] is a path. Fails the calling test on error (pid() == -1).
    explicit ChildProcess(const std::vector<std::string> &argv);
    // Drive an existing process through two FIFOs (opened in order in, out).
    ChildProcess(pid_t pid, const std::string &fifo_in, const std::string &fifo_out);
    ~ChildProcess();
    ChildProcess(const ChildProcess &) = delete;
    ChildProcess &operator=(const ChildProcess &) = delete;

    pid_t pid() const { return pid_; }
    bool send(const std::string &line);
    bool sendBytes(const void *data, size_t len);
    void closeInput();
    // One line without its newline; false at EOF.
    bool readLine(std::string *line);
    // Waits for exit; returns the exit status (or 128+signal).
    int wait();

private:
    pid_t pid_ = -1;
    int in_ = -1;
    FILE *out_ = nullptr;
    bool own_ = true; // we spawned it, so we reap it
};

// Sends "round SEED" and parses the answer.
bool runWriterRound(ChildProcess &writer, uint64_t seed, GroundTruth *truth);

// Pages of `truth` not covered by `collected` (normalized ranges).
std::vector<uint64_t> missingPages(const std::vector<PageRange> &collected,
                                   const std::vector<PageRange> &truth, uint64_t page_size);

std::string buildDir(); // directory of the test programs (from the environment)

// The real oohd ($OOHD) on a private socket, in a directory of its own that
// other uids can reach.
class OohdProcess {
public:
    OohdProcess() = default;
    OohdProcess(const OohdProcess &) = delete;
    OohdProcess &operator=(const OohdProcess &) = delete;
    ~OohdProcess() { stop(); }

    // Starts it with `extra` arguments; fails the calling test if it does
    // not listen within 5 s (check with ASSERT_NO_FATAL_FAILURE).
    void start(const std::string &tag, const std::vector<std::string> &extra = {});
    // SIGTERM and reap; fails the test unless oohd exits 0.
    void stop();

    pid_t pid() const { return pid_; }
    const std::string &socket() const { return socket_; }

private:
    pid_t pid_ = -1;
    std::string dir_;
    std::string socket_;
};

} // namespace ooh::test

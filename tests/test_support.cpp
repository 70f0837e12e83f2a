// SPDX-License-Identifier: Apache-2.0
// Implementation of tests/test_support.h.
#include "test_support.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace ooh::test {

void requireRootOrSkip(const char *suite)
{
    if (::geteuid() != 0) {
        std::printf("SKIP: %s needs root (ptrace and /proc of other processes)\n", suite);
        std::exit(kSkip);
    }
}

int runRootTests(int argc, char **argv, const char *suite)
{
    requireRootOrSkip(suite);
    ::testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
}

ChildProcess::ChildProcess(const std::vector<std::string> &argv)
{
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) < 0 || ::pipe2(out, O_CLOEXEC) < 0)
        return;
    pid_ = ::fork();
    if (pid_ == 0) {
        ::dup2(in[0], STDIN_FILENO);
        ::dup2(out[1], STDOUT_FILENO);
        std::vector<char *> args;
        for (const auto &a : argv)
            args.push_back(const_cast<char *>(a.c_str()));
        args.push_back(nullptr);
        ::execv(args[0], args.data());
        std::perror("execv");
        ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    in_ = in[1];
    out_ = ::fdopen(out[0], "r");
}

ChildProcess::ChildProcess(pid_t pid, const std::string &fifo_in, const std::string &fifo_out)
    : pid_(pid), own_(false)
{
    // The child creates both FIFOs, then opens "in" for reading and "out"
    // for writing: open ours in the same order.
    for (int i = 0; i < 500 && ::access(fifo_out.c_str(), F_OK) != 0; ++i)
        ::usleep(10000);
    in_ = ::open(fifo_in.c_str(), O_WRONLY | O_CLOEXEC);
    int out = ::open(fifo_out.c_str(), O_RDONLY | O_CLOEXEC);
    out_ = out >= 0 ? ::fdopen(out, "r") : nullptr;
}

ChildProcess::~ChildProcess()
{
    closeInput();
    if (out_)
        std::fclose(out_);
    if (pid_ > 0 && own_) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    } else if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
    }
}

bool ChildProcess::send(const std::string &line)
{
    std::string l = line + "\n";
    return sendBytes(l.data(), l.size());
}

bool ChildProcess::sendBytes(const void *data, size_t len)
{
    const char *p = static_cast<const char *>(data);
    while (len > 0) {
        ssize_t n = ::write(in_, p, len);
        if (n <= 0)
            return false;
        p += n;
        len -= static_cast<size_t>(n);
    }
    return true;
}

void ChildProcess::closeInput()
{
    if (in_ >= 0)
        ::close(in_);
    in_ = -1;
}

bool ChildProcess::readLine(std::string *line)
{
    if (!out_)
        return false;
    char buf[512];
    if (!std::fgets(buf, sizeof(buf), out_))
        return false;
    *line = buf;
    while (!line->empty() && line->back() == '\n')
        line->pop_back();
    return true;
}

int ChildProcess::wait()
{
    int status = 0;
    if (::waitpid(pid_, &status, 0) != pid_)
        return -1;
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool runWriterRound(ChildProcess &writer, uint64_t seed, GroundTruth *truth)
{
    *truth = GroundTruth();
    if (!writer.send("round " + std::to_string(seed)))
        return false;
    std::string line;
    while (writer.readLine(&line)) {
        WriterLine kind = parseWriterLine(line.c_str(), truth);
        if (kind != WriterLine::Record)
            return kind == WriterLine::End;
    }
    return false;
}

std::vector<uint64_t> missingPages(const std::vector<PageRange> &collected,
                                   const std::vector<PageRange> &truth, uint64_t page_size)
{
    std::vector<uint64_t> missing;
    for (const auto &t : truth) {
        for (uint64_t page = t.start; page < t.end; page += page_size) {
            auto it = std::upper_bound(collected.begin(), collected.end(), page,
                                       [](uint64_t a, const PageRange &r) { return a < r.start; });
            bool covered = it != collected.begin() && std::prev(it)->end > page;
            if (!covered)
                missing.push_back(page);
        }
    }
    return missing;
}

std::string buildDir()
{
    const char *d = std::getenv("OOH_TESTPROGS_DIR");
    return d ? d : ".";
}

void OohdProcess::start(const std::string &tag, const std::vector<std::string> &extra)
{
    auto dir = std::filesystem::temp_directory_path() / (tag + "-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    std::filesystem::permissions(dir, std::filesystem::perms(0755));
    dir_ = dir.string();
    socket_ = (dir / "oohd.sock").string();
    const char *oohd = std::getenv("OOHD");
    ASSERT_NE(oohd, nullptr) << "OOHD (path of the oohd executable) is not set";
    std::vector<std::string> args = {oohd, "--foreground", "--socket", socket_};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = ::fork();
    if (pid_ == 0) {
        std::vector<char *> argv;
        for (auto &a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    for (int i = 0; i < 500 && !std::filesystem::exists(socket_); ++i)
        ::usleep(10000);
    ASSERT_TRUE(std::filesystem::exists(socket_)) << "oohd did not start";
}

void OohdProcess::stop()
{
    if (pid_ > 0) {
        ::kill(pid_, SIGCONT); // a test may have stopped it
        ::kill(pid_, SIGTERM);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
            << "oohd did not exit cleanly on SIGTERM (status " << status << ")";
        pid_ = -1;
    }
    if (!dir_.empty())
        std::filesystem::remove_all(dir_);
    dir_.clear();
}

} // namespace ooh::test

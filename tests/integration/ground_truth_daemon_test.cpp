// SPDX-License-Identifier: Apache-2.0
// Ground truth through the whole stack: the real oohd executable on a
// private socket, libooh as the client, ooh-dirty-writer as the target;
// and exact pages (exact_pages.h) through it.
#include "exact_pages.h"
#include "ground_truth.h"
#include "ooh/ooh.hpp"

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>

namespace ooh {
namespace {

class DaemonGroundTruth : public ::testing::Test {
protected:
    void SetUp() override
    {
        ASSERT_NO_FATAL_FAILURE(oohd_.start("ooh-gtd", {"--log-level", "info"}));
        socket_ = oohd_.socket();
        daemon_ = oohd_.pid();
    }

    test::OohdProcess oohd_;
    std::string socket_;
    pid_t daemon_ = -1;
};

// A collect through libooh, as PageRanges (checked to be normalized). Every
// set must say it holds the discarded pages too: the ground truth holds it
// to that, and CRIU then skips looking up the other pages' presence.
CollectFn oohdCollector(Client &client, pid_t pid, uint64_t start_time)
{
    return [&client, pid, start_time]() -> Result<std::vector<PageRange>> {
        std::vector<ooh_range> ranges;
        ooh_collect_info info{};
        if (int r = client.collect(pid, ranges, &info, start_time); r < 0)
            return makeError(r, client.error());
        EXPECT_TRUE(info.flags & OOH_COLLECT_ALL_CHANGES) << "set not said to hold discards";
        std::vector<PageRange> out;
        for (auto &r : ranges)
            out.push_back({r.start, r.end, (r.flags & OOH_RANGE_WHOLESALE) != 0});
        EXPECT_EQ(out, normalizeRanges(out)) << "oohd's ranges must be normalized";
        return out;
    };
}

// Connects to oohd; the names of the backends it says are available.
void availableBackends(Client &client, const std::string &socket, std::vector<std::string> *out)
{
    ASSERT_EQ(client.connect(socket.c_str()), 0) << client.error();
    ooh_backend_info info[8];
    long n = ooh_backends(client.get(), info, 8);
    ASSERT_GT(n, 0) << client.error();
    for (long b = 0; b < n && b < 8; ++b)
        if (info[b].available)
            out->emplace_back(info[b].name);
}

TEST_F(DaemonGroundTruth, EveryBackendThroughOohd)
{
    Client client;
    std::vector<std::string> names;
    ASSERT_NO_FATAL_FAILURE(availableBackends(client, socket_, &names));
    for (const std::string &name : names) {
        ChildProcess writer({test::buildDir() + "/ooh-dirty-writer"});
        std::string ready;
        ASSERT_TRUE(writer.readLine(&ready));
        uint64_t start_time = 0;
        ASSERT_EQ(client.track(writer.pid(), name.c_str(), &start_time), 0) << client.error();
        Tally tally;
        CollectFn collect = oohdCollector(client, writer.pid(), start_time);
        for (int round = 1; round <= 20 && !HasFatalFailure(); ++round)
            checkRound(writer, 9000 + round, collect, &tally, name + " via oohd");
        printTally(name + " (via oohd)", tally);
        expectExactPartBounded(name + " (via oohd)", tally);
        EXPECT_EQ(client.untrack(writer.pid()), 0) << client.error();
        writer.send("exit");
        EXPECT_EQ(writer.wait(), 0);
    }
    if (names.empty())
        GTEST_SKIP() << "no backend available";
}

// In the manner of the kernel's pagemap_ioctl.c, through oohd: in a
// tracked mapping, write chosen pages, expect exactly those, then nothing.
// With `huge`, in a mapping of transparent huge pages.
void exactPagesThroughOohd(const std::string &socket, bool huge)
{
    Client client;
    std::vector<std::string> names;
    ASSERT_NO_FATAL_FAILURE(availableBackends(client, socket, &names));
    for (const std::string &name : names) {
        test::PageToucher toucher;
        bool skip = false;
        std::string err = test::startToucher(toucher, huge, &skip);
        if (skip)
            GTEST_SKIP() << err;
        ASSERT_TRUE(err.empty()) << err;
        uint64_t start_time = 0;
        ASSERT_EQ(client.track(toucher.pid(), name.c_str(), &start_time), 0) << client.error();
        CollectFn collect = oohdCollector(client, toucher.pid(), start_time);
        auto first = collect();
        ASSERT_TRUE(first) << "first collect: " << first.error().message;
        std::string done;
        std::string diff = test::runExactPages(toucher, collect,
                                               test::hugeGranule(name, toucher.pageSize()), &done);
        EXPECT_TRUE(diff.empty()) << name << " via oohd: " << diff;
        std::printf("[exact pages] %s via oohd%s: %s\n", name.c_str(), huge ? ", huge pages" : "",
                    done.c_str());
        EXPECT_EQ(client.untrack(toucher.pid()), 0) << client.error();
    }
    if (names.empty())
        GTEST_SKIP() << "no backend available";
}

TEST_F(DaemonGroundTruth, ExactPagesThroughOohd) { exactPagesThroughOohd(socket_, false); }

TEST_F(DaemonGroundTruth, ExactPagesOfHugePagesThroughOohd)
{
    exactPagesThroughOohd(socket_, true);
}

// A client in another PID namespace (CRIU in a container) names the
// process by pidfd; oohd answers with the pid it knows it by.
// A stopped (or wedged) oohd must not hang its client: CRIU waits on it
// with the whole process tree frozen.
TEST_F(DaemonGroundTruth, StoppedOohdTimesOutInsteadOfHanging)
{
    ooh_client *c = nullptr;
    ASSERT_EQ(ooh_connect(socket_.c_str(), &c), 0) << ooh_last_error(c);
    ASSERT_EQ(ooh_set_reply_timeout(c, 300), 0) << ooh_last_error(c);
    ASSERT_EQ(::kill(daemon_, SIGSTOP), 0);
    auto t0 = std::chrono::steady_clock::now();
    ooh_backend_info info[8];
    long n = ooh_backends(c, info, 8);
    auto waited = std::chrono::steady_clock::now() - t0;
    ::kill(daemon_, SIGCONT);
    EXPECT_EQ(n, -ETIMEDOUT) << ooh_last_error(c);
    EXPECT_NE(std::string(ooh_last_error(c)).find("did not answer"), std::string::npos)
        << ooh_last_error(c);
    EXPECT_LT(waited, std::chrono::seconds(10)) << "the reply timeout did not bound the wait";
    // The connection is closed rather than left out of step with oohd.
    EXPECT_EQ(ooh_backends(c, info, 8), -ENOTCONN);
    ooh_close(c);
    // oohd itself serves new clients once it runs again.
    ASSERT_EQ(ooh_connect(socket_.c_str(), &c), 0) << ooh_last_error(c);
    EXPECT_GT(ooh_backends(c, info, 8), 0) << ooh_last_error(c);
    ooh_close(c);
}

TEST_F(DaemonGroundTruth, TrackByPidfdFromAnotherPidNamespace)
{
    int pipefd[2];
    ASSERT_EQ(::pipe(pipefd), 0);
    pid_t helper = ::fork();
    if (helper == 0) {
        if (::unshare(CLONE_NEWPID) < 0)
            ::_exit(3);
        pid_t init = ::fork(); // pid 1 of the new namespace
        if (init == 0) {
            pid_t target = ::fork(); // pid 2
            if (target == 0) {
                for (;;)
                    ::pause();
            }
            int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, target, 0));
            ooh_client *c = nullptr;
            pid_t tracked = -1;
            if (pidfd < 0 || ooh_connect(socket_.c_str(), &c) < 0 ||
                ooh_track_pidfd(c, pidfd, nullptr, &tracked, nullptr) < 0)
                tracked = -1;
            struct ooh_collect_info info {};
            if (tracked > 0 && ooh_collect_begin(c, tracked, 0, &info) < 0)
                tracked = -2;
            ooh_range r;
            while (tracked > 0 && ooh_collect_next(c, &r, 1) > 0) {
            }
            int32_t answer[2] = {static_cast<int32_t>(target), static_cast<int32_t>(tracked)};
            if (::write(pipefd[1], answer, sizeof(answer)) != sizeof(answer))
                ::_exit(4);
            ::sleep(2); // keep the target alive while the test looks at it
            ::kill(target, SIGKILL);
            ::_exit(0);
        }
        int status = 0;
        ::waitpid(init, &status, 0);
        ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 5);
    }
    ::close(pipefd[1]);
    int32_t answer[2] = {0, 0};
    ASSERT_EQ(::read(pipefd[0], answer, sizeof(answer)), static_cast<ssize_t>(sizeof(answer)));
    EXPECT_EQ(answer[0], 2) << "the target is pid 2 of its namespace";
    ASSERT_GT(answer[1], 0) << "track by pidfd or the collect failed";
    // oohd's pid is the host pid of that very process: its NSpid ends in 2.
    std::ifstream status("/proc/" + std::to_string(answer[1]) + "/status");
    std::string line, nspid;
    while (std::getline(status, line))
        if (line.rfind("NSpid:", 0) == 0)
            nspid = line;
    EXPECT_EQ(nspid, "NSpid:\t" + std::to_string(answer[1]) + "\t2");
    int st = 0;
    ::waitpid(helper, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "helper status " << st;
}

} // namespace
} // namespace ooh

int main(int argc, char **argv)
{
    return ooh::test::runRootTests(argc, argv, "the ground-truth tests");
}

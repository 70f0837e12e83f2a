// SPDX-License-Identifier: Apache-2.0
// Injection leaves the target intact: targets sleeping in a syscall,
// spinning in user code, blocked in read() and multithreaded are tracked
// and untracked several times while they work, and their own checksums
// must come out as if nothing happened. Also: clear errors for a target
// that is already traced or already uses userfaultfd.
#include "backends/uffd_wp.h"
#include "inject/remote_syscall.h"
#include "inject_target.h"
#include "test_support.h"

#include <chrono>
#include <gtest/gtest.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <thread>

namespace ooh {
namespace {

using test::ChildProcess;

std::string targetPath() { return test::buildDir() + "/ooh-inject-target"; }

class InjectTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        auto probe = backend_.probe();
        if (!probe.available)
            GTEST_SKIP() << "uffd-wp unavailable: " << probe.reason;
    }

    // Tracks and untracks `times` times, pausing between, while it works.
    void trackRepeatedly(pid_t pid, int times)
    {
        auto proc = Process::open(pid);
        ASSERT_TRUE(proc) << proc.error().message;
        for (int i = 0; i < times; ++i) {
            auto t = backend_.track(*proc);
            ASSERT_TRUE(t) << "track #" << i << ": " << t.error().message;
            std::vector<PageRange> ranges;
            ASSERT_TRUE((*t)->collect(ranges));
            std::this_thread::sleep_for(std::chrono::milliseconds(15));
        }
    }

    uint64_t resultOf(ChildProcess &c)
    {
        std::string line;
        unsigned long long r = 0;
        while (c.readLine(&line)) {
            EXPECT_EQ(line.rfind("error", 0), std::string::npos) << line;
            if (std::sscanf(line.c_str(), "result %llu", &r) == 1)
                break;
        }
        EXPECT_EQ(c.wait(), 0);
        return r;
    }

    UffdWpBackend backend_;
};

TEST_F(InjectTest, SpinningTarget)
{
    const uint64_t n = 400'000'000;
    ChildProcess c({targetPath(), "spin", std::to_string(n)});
    std::string ready;
    ASSERT_TRUE(c.readLine(&ready));
    trackRepeatedly(c.pid(), 8);
    EXPECT_EQ(resultOf(c), testprog::spinResult(1, n));
}

TEST_F(InjectTest, SleepingTarget)
{
    // nanosleep is restarted through restart_syscall after each injection;
    // the target checks it never returns early or with EINTR.
    const uint64_t n = 150;
    ChildProcess c({targetPath(), "sleep", std::to_string(n)});
    std::string ready;
    ASSERT_TRUE(c.readLine(&ready));
    trackRepeatedly(c.pid(), 10);
    uint64_t acc = 1;
    for (uint64_t i = 0; i < n; ++i)
        acc = testprog::step(acc, i);
    EXPECT_EQ(resultOf(c), acc);
}

TEST_F(InjectTest, TargetBlockedInRead)
{
    ChildProcess c({targetPath(), "read"});
    std::string ready;
    ASSERT_TRUE(c.readLine(&ready));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let it block
    trackRepeatedly(c.pid(), 6);
    uint64_t acc = 1;
    for (uint64_t i = 0; i < 100; ++i) {
        uint64_t v = i * 7919;
        ASSERT_TRUE(c.sendBytes(&v, sizeof(v)));
        acc = testprog::step(acc, v + i);
        if (i % 25 == 0)
            trackRepeatedly(c.pid(), 1);
    }
    c.closeInput();
    EXPECT_EQ(resultOf(c), acc);
}

TEST_F(InjectTest, MultithreadedTarget)
{
    const uint64_t threads = 4, work = 100'000'000;
    ChildProcess c({targetPath(), "threads", std::to_string(threads), std::to_string(work)});
    std::string ready;
    ASSERT_TRUE(c.readLine(&ready));
    trackRepeatedly(c.pid(), 8);
    uint64_t expect = 0;
    for (uint64_t t = 0; t < threads; ++t) {
        uint64_t out;
        if (t % 2) {
            out = t + 1;
            for (uint64_t i = 0; i < work / 100000 + 1; ++i)
                out = testprog::step(out, i);
        } else {
            out = testprog::spinResult(t + 1, work);
        }
        expect ^= out + t;
    }
    EXPECT_EQ(resultOf(c), expect);
}

TEST_F(InjectTest, AlreadyTracedTargetGetsClearError)
{
    ChildProcess c({targetPath(), "sleep", "1000"});
    std::string ready;
    ASSERT_TRUE(c.readLine(&ready));
    // Become its tracer from another thread's point of view: a helper child.
    pid_t tracer = ::fork();
    if (tracer == 0) {
        if (::ptrace(PTRACE_SEIZE, c.pid(), nullptr, nullptr) < 0)
            ::_exit(1);
        ::pause();
        ::_exit(0);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto proc = Process::open(c.pid());
    ASSERT_TRUE(proc);
    auto t = backend_.track(*proc);
    ASSERT_FALSE(t);
    EXPECT_EQ(t.error().code, EBUSY);
    EXPECT_NE(t.error().message.find("already traced by pid " + std::to_string(tracer)),
              std::string::npos)
        << t.error().message;
    ::kill(tracer, SIGKILL);
    ::waitpid(tracer, nullptr, 0);
}

TEST_F(InjectTest, TargetUsingUserfaultfdGetsClearError)
{
    ChildProcess c({targetPath(), "uffd"});
    std::string ready;
    ASSERT_TRUE(c.readLine(&ready));
    if (ready.rfind("skip", 0) == 0)
        GTEST_SKIP() << ready;
    auto proc = Process::open(c.pid());
    ASSERT_TRUE(proc);
    auto t = backend_.track(*proc);
    ASSERT_FALSE(t);
    EXPECT_EQ(t.error().code, EBUSY);
    EXPECT_NE(t.error().message.find("already uses userfaultfd"), std::string::npos)
        << t.error().message;
}

TEST_F(InjectTest, TargetInVforkTimesOutAndIsReleased)
{
    // The vfork() parent cannot stop until its child exits (3 s): track
    // fails with a clear error instead of hanging, and once the parent
    // stops it is detached and finishes its work untouched.
    ChildProcess c({targetPath(), "vfork", "3000"});
    std::string ready;
    ASSERT_TRUE(c.readLine(&ready));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto proc = Process::open(c.pid());
    ASSERT_TRUE(proc);
    auto t0 = std::chrono::steady_clock::now();
    auto t = backend_.track(*proc);
    ASSERT_FALSE(t);
    EXPECT_EQ(t.error().code, ETIMEDOUT) << t.error().message;
    EXPECT_NE(t.error().message.find("vfork"), std::string::npos) << t.error().message;
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
    for (int i = 0; i < 200 && reapStrayTracees() > 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(reapStrayTracees(), 0u);
    EXPECT_EQ(resultOf(c), testprog::spinResult(1, 1000));
}

TEST_F(InjectTest, ExitedTargetIsNoticed)
{
    ChildProcess c({targetPath(), "spin", "1"});
    std::string line;
    ASSERT_TRUE(c.readLine(&line));
    auto proc = Process::open(c.pid());
    ASSERT_TRUE(proc);
    while (c.readLine(&line)) {
    }
    c.wait();
    EXPECT_FALSE(proc->isAlive());
    auto t = backend_.track(*proc);
    EXPECT_FALSE(t);
}

} // namespace
} // namespace ooh

int main(int argc, char **argv)
{
    return ooh::test::runRootTests(argc, argv, "the injection tests");
}

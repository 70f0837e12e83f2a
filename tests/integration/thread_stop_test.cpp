// SPDX-License-Identifier: Apache-2.0
// Stopping a target's threads (oohd/target/thread_stop.h), as soft-dirty's
// collect and injection do: every thread of a multithreaded target, and of
// one that keeps creating threads, is held stopped, then released intact;
// a target blocked in vfork() or frozen by the cgroup v1 freezer is refused
// within the one deadline, with the reason, instead of hanging, and its
// threads are detached once they stop; a target traced by someone else is
// refused, or accepted as stopped where that tracer holds it stopped.
#include "inject_target.h"
#include "target.h"
#include "test_support.h"
#include "thread_stop.h"

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace ooh {
namespace {

using namespace std::chrono_literals;
using test::ChildProcess;

std::string targetPath() { return test::buildDir() + "/ooh-inject-target"; }

// What soft-dirty's collect asks for.
StopOptions softDirtyOptions(std::chrono::milliseconds timeout = kDefaultStopTimeout)
{
    StopOptions o;
    o.timeout = timeout;
    o.accept_stopped_by_other_tracer = true;
    return o;
}

// Starts `argv` (ooh-inject-target) and opens it once it said "ready".
struct Started {
    explicit Started(const std::vector<std::string> &argv) : child(argv)
    {
        std::string ready;
        if (child.readLine(&ready)) {
            auto t = Target::open(child.pid());
            if (t)
                target = *t;
        }
    }
    // The "result N" line, after which the target must exit 0.
    uint64_t result()
    {
        std::string line;
        unsigned long long r = 0;
        while (child.readLine(&line))
            if (std::sscanf(line.c_str(), "result %llu", &r) == 1)
                break;
        EXPECT_EQ(child.wait(), 0);
        return r;
    }
    ChildProcess child;
    Target target;
};

std::set<char> statesOf(const Target &t)
{
    std::set<char> states;
    for (pid_t tid : t.threads())
        states.insert(t.threadState(tid));
    return states;
}

// Waits (reaping strays) until every stray of this thread is detached.
bool straysDetached(std::chrono::milliseconds within)
{
    auto until = std::chrono::steady_clock::now() + within;
    while (reapStrayTracees() > 0) {
        if (std::chrono::steady_clock::now() > until)
            return false;
        std::this_thread::sleep_for(20ms);
    }
    return true;
}

TEST(ThreadStop, EveryThreadOfAMultithreadedTargetIsHeldThenReleased)
{
    const uint64_t threads = 4, work = 60'000'000;
    Started s({targetPath(), "threads", std::to_string(threads), std::to_string(work)});
    ASSERT_GT(s.target.pid(), 0);
    for (int round = 0; round < 5; ++round) {
        std::this_thread::sleep_for(10ms);
        auto stopped = stopAllThreads(s.target, softDirtyOptions());
        ASSERT_TRUE(stopped) << stopped.error().message;
        auto tids = s.target.threads();
        EXPECT_EQ(stopped->size(), tids.size());
        EXPECT_GE(tids.size(), 2u);
        for (const Tracee &t : *stopped)
            EXPECT_TRUE(t.stopped()) << "thread " << t.tid();
        // 't': held in a ptrace stop, every one of them.
        EXPECT_EQ(statesOf(s.target), std::set<char>{'t'});
    }
    EXPECT_NE(statesOf(s.target).count('R') + statesOf(s.target).count('S'), 0u)
        << "the threads were not released";
    uint64_t expect = 0;
    for (uint64_t t = 0; t < threads; ++t) {
        uint64_t out = t + 1;
        if (t % 2) {
            for (uint64_t i = 0; i < work / 100000 + 1; ++i)
                out = testprog::step(out, i);
        } else {
            out = testprog::spinResult(t + 1, work);
        }
        expect ^= out + t;
    }
    EXPECT_EQ(s.result(), expect);
}

// Threads started while others are being stopped are found by listing
// again: once stopAllThreads returns, no thread of the target runs.
TEST(ThreadStop, ThreadsCreatedWhileStoppingAreStoppedToo)
{
    Started s({targetPath(), "spawn", "1500"});
    ASSERT_GT(s.target.pid(), 0);
    for (int round = 0; round < 10; ++round) {
        std::this_thread::sleep_for(20ms);
        auto stopped = stopAllThreads(s.target, softDirtyOptions());
        ASSERT_TRUE(stopped) << stopped.error().message;
        std::this_thread::sleep_for(5ms); // a thread left running would spawn meanwhile
        auto tids = s.target.threads();
        std::set<pid_t> held;
        for (const Tracee &t : *stopped)
            held.insert(t.tid());
        for (pid_t tid : tids)
            EXPECT_TRUE(held.count(tid)) << "thread " << tid << " was not stopped";
        EXPECT_EQ(statesOf(s.target), std::set<char>{'t'});
    }
    EXPECT_GT(s.result(), 0u);
}

// vfork() blocks the parent thread until the child execs or exits; no
// ptrace stop reaches it. Refused within the deadline (not hanging, as
// soft-dirty's own stopper did), with the reason, and the thread is
// detached once it stops.
TEST(ThreadStop, VforkBlockedTargetIsRefusedWithinTheDeadline)
{
    Started s({targetPath(), "vfork", "2500"});
    ASSERT_GT(s.target.pid(), 0);
    for (int i = 0; i < 200 && s.target.threadState(s.target.pid()) != 'D'; ++i)
        std::this_thread::sleep_for(5ms);
    ASSERT_EQ(s.target.threadState(s.target.pid()), 'D');

    auto t0 = std::chrono::steady_clock::now();
    auto stopped = stopAllThreads(s.target, softDirtyOptions(300ms));
    auto took = std::chrono::steady_clock::now() - t0;
    ASSERT_FALSE(stopped) << "a vfork()-blocked thread was reported stopped";
    EXPECT_EQ(stopped.error().code, ETIMEDOUT) << stopped.error().message;
    EXPECT_NE(stopped.error().message.find("vfork"), std::string::npos) << stopped.error().message;
    EXPECT_NE(stopped.error().message.find("within 300 ms"), std::string::npos)
        << stopped.error().message;
    EXPECT_GE(took, 300ms);
    EXPECT_LT(took, 1s);

    // Still attached to it: a second request says so at once.
    auto again = stopOneThread(s.target, softDirtyOptions(300ms));
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, ETIMEDOUT) << again.error().message;
    EXPECT_NE(again.error().message.find("earlier attempt"), std::string::npos)
        << again.error().message;

    EXPECT_TRUE(straysDetached(5s));
    EXPECT_EQ(s.result(), testprog::spinResult(1, 1000));
}

// Three threads blocked in vfork(): one deadline for all, not one each.
TEST(ThreadStop, OneDeadlineForAllThreads)
{
    Started s({targetPath(), "vforks", "3", "2500"});
    ASSERT_GT(s.target.pid(), 0);
    auto blocked = [&] {
        size_t n = 0;
        for (pid_t tid : s.target.threads())
            n += s.target.threadState(tid) == 'D';
        return n;
    };
    for (int i = 0; i < 200 && blocked() < 3; ++i)
        std::this_thread::sleep_for(5ms);
    ASSERT_EQ(blocked(), 3u);

    auto t0 = std::chrono::steady_clock::now();
    auto stopped = stopAllThreads(s.target, softDirtyOptions(400ms));
    auto took = std::chrono::steady_clock::now() - t0;
    ASSERT_FALSE(stopped);
    EXPECT_EQ(stopped.error().code, ETIMEDOUT) << stopped.error().message;
    EXPECT_NE(stopped.error().message.find("vfork"), std::string::npos) << stopped.error().message;
    EXPECT_LT(took, 1s) << "each thread got its own deadline";
    EXPECT_TRUE(straysDetached(5s));
    EXPECT_EQ(s.result(), 3u);
}

// A cgroup v1 freezer hierarchy, if mounted; empty otherwise.
std::string freezerRoot()
{
    std::ifstream mounts("/proc/self/mounts");
    std::string dev, dir, type, opts;
    while (mounts >> dev >> dir >> type >> opts) {
        mounts.ignore(1 << 20, '\n');
        if (type == "cgroup" && ("," + opts + ",").find(",freezer,") != std::string::npos)
            return dir;
    }
    return {};
}

bool writeFile(const std::string &path, const std::string &text)
{
    std::ofstream f(path);
    f << text << std::flush;
    return bool(f);
}

TEST(ThreadStop, FrozenTargetIsRefusedNamingTheFreezer)
{
    const std::string root = freezerRoot();
    if (root.empty())
        GTEST_SKIP() << "no cgroup v1 freezer hierarchy here (cgroup v2 lets ptrace stops "
                        "through a frozen cgroup)";
    Started s({targetPath(), "spin", "4000000000"});
    ASSERT_GT(s.target.pid(), 0);
    const std::string group = root + "/ooh-thread-stop-" + std::to_string(::getpid());
    ASSERT_EQ(::mkdir(group.c_str(), 0755), 0) << std::strerror(errno);
    ASSERT_TRUE(writeFile(group + "/cgroup.procs", std::to_string(s.target.pid())));
    ASSERT_TRUE(writeFile(group + "/freezer.state", "FROZEN"));
    for (int i = 0; i < 200 && s.target.threadState(s.target.pid()) != 'D'; ++i)
        std::this_thread::sleep_for(5ms);

    auto stopped = stopAllThreads(s.target, softDirtyOptions(300ms));
    writeFile(group + "/freezer.state", "THAWED");
    ASSERT_FALSE(stopped) << "a frozen thread was reported stopped";
    EXPECT_EQ(stopped.error().code, ETIMEDOUT) << stopped.error().message;
    EXPECT_NE(stopped.error().message.find("frozen"), std::string::npos) << stopped.error().message;
    EXPECT_NE(stopped.error().message.find("ooh-thread-stop-"), std::string::npos)
        << stopped.error().message;
    EXPECT_TRUE(straysDetached(5s));

    ::kill(s.target.pid(), SIGKILL);
    s.child.wait();
    // The group empties once the killed process is gone.
    for (int i = 0; i < 100 && ::rmdir(group.c_str()) != 0; ++i)
        std::this_thread::sleep_for(20ms);
}

// Another process traces the target: refused, unless that tracer holds it
// stopped and the caller accepts that (CRIU has frozen it for soft-dirty).
TEST(ThreadStop, TargetTracedBySomeoneElse)
{
    Started s({targetPath(), "sleep", "100000"});
    ASSERT_GT(s.target.pid(), 0);
    const pid_t pid = s.target.pid();
    int hold[2];
    ASSERT_EQ(::pipe(hold), 0);
    pid_t tracer = ::fork();
    if (tracer == 0) {
        // Seize it, hold it in an interrupt stop, wait to be told to go.
        int status;
        if (::ptrace(PTRACE_SEIZE, pid, nullptr, nullptr) < 0 ||
            ::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) < 0 ||
            ::waitpid(pid, &status, __WALL) != pid)
            ::_exit(1);
        char c;
        ::close(hold[1]);
        (void)!::read(hold[0], &c, 1);
        ::_exit(0);
    }
    ::close(hold[0]);
    for (int i = 0; i < 200 && s.target.threadState(pid) != 't'; ++i)
        std::this_thread::sleep_for(5ms);
    ASSERT_EQ(s.target.threadState(pid), 't');

    auto accepted = stopAllThreads(s.target, softDirtyOptions());
    ASSERT_TRUE(accepted) << accepted.error().message;
    EXPECT_TRUE(accepted->empty());

    auto refused = stopOneThread(s.target);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, EBUSY) << refused.error().message;
    EXPECT_NE(refused.error().message.find("already traced by pid " + std::to_string(tracer)),
              std::string::npos)
        << refused.error().message;

    ::close(hold[1]);
    ::waitpid(tracer, nullptr, 0);
}

TEST(ThreadStop, ExitedTargetIsRefused)
{
    Started s({targetPath(), "read"});
    ASSERT_GT(s.target.pid(), 0);
    s.child.closeInput();
    s.result();
    auto stopped = stopAllThreads(s.target, softDirtyOptions());
    ASSERT_FALSE(stopped);
    EXPECT_EQ(stopped.error().code, ESRCH) << stopped.error().message;
}

} // namespace
} // namespace ooh

int main(int argc, char **argv)
{
    return ooh::test::runRootTests(argc, argv, "the thread stop tests");
}

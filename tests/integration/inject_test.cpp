// SPDX-License-Identifier: Apache-2.0
// Injection leaves the target intact: targets sleeping in a syscall,
// spinning in user code, blocked in read() and multithreaded are tracked
// and untracked several times while they work, and their own checksums
// must come out as if nothing happened. Targets under seccomp (strict mode,
// a filter that kills on userfaultfd) survive tracking, are tracked exactly
// and keep their seccomp; an oohd without CAP_SYS_ADMIN refuses them
// without harm. Also: clear errors for a target that is already traced or
// already uses userfaultfd.
#include "backends/uffd_wp.h"
#include "inject/remote_syscall.h"
#include "inject_target.h"
#include "test_support.h"

#include <chrono>
#include <csignal>
#include <fstream>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <set>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace ooh {
namespace {

using test::ChildProcess;

std::string targetPath() { return test::buildDir() + "/ooh-inject-target"; }

// ooh-inject-target in a seccomp mode: a region of pages it writes on
// command, with nothing but read, write and exit (strict mode) or anything
// but userfaultfd (the filter) allowed.
class SeccompTarget {
public:
    explicit SeccompTarget(const char *mode) : child_({targetPath(), mode, "32"})
    {
        std::signal(SIGPIPE, SIG_IGN); // a command to a killed target fails, not us
    }

    // False with the target's line in *skip if it could not enter the mode.
    bool start(std::string *skip)
    {
        std::string line;
        if (!child_.readLine(&line))
            return false;
        int pid = 0;
        unsigned long long base = 0, pages = 0;
        if (std::sscanf(line.c_str(), "ready %d %llx %llu", &pid, &base, &pages) != 3) {
            *skip = line;
            return false;
        }
        base_ = base;
        pages_ = pages;
        return pid == child_.pid();
    }

    bool command(uint64_t op, uint64_t arg)
    {
        uint64_t cmd[2] = {op, arg};
        return child_.sendBytes(cmd, sizeof(cmd));
    }
    // Writes page i and waits for the target to say it did.
    bool writePage(uint64_t i)
    {
        std::string line;
        return command('w', i) && child_.readLine(&line) && line == "ok";
    }
    // The indexes of the region's pages that `ranges` cover.
    std::set<uint64_t> pagesIn(const std::vector<PageRange> &ranges) const
    {
        const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
        std::set<uint64_t> out;
        for (uint64_t i = 0; i < pages_; ++i)
            for (const auto &r : ranges)
                if (r.start <= base_ + i * page && base_ + (i + 1) * page <= r.end)
                    out.insert(i);
        return out;
    }
    // The Seccomp: field of its /proc status (1 strict, 2 filter).
    int seccompMode() const
    {
        std::ifstream in("/proc/" + std::to_string(child_.pid()) + "/status");
        std::string line;
        while (std::getline(in, line))
            if (line.rfind("Seccomp:", 0) == 0)
                return std::atoi(line.c_str() + 8);
        return -1;
    }
    ChildProcess &child() { return child_; }

private:
    ChildProcess child_;
    uint64_t base_ = 0;
    uint64_t pages_ = 0;
};

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
        auto proc = Target::open(pid);
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

    // A target under seccomp `mode` survives repeated tracking, is tracked
    // exactly (written pages and only those, in its region), and keeps its
    // seccomp: the forbidden syscall still kills it with `kill_signal`.
    void trackUnderSeccomp(const char *mode, int seccomp_mode, int kill_signal)
    {
        SeccompTarget t(mode);
        std::string skip;
        if (!t.start(&skip)) {
            ASSERT_EQ(skip.rfind("skip", 0), 0u) << "target did not start: " << skip;
            GTEST_SKIP() << skip;
        }
        ASSERT_EQ(t.seccompMode(), seccomp_mode);
        trackRepeatedly(t.child().pid(), 3);
        ASSERT_TRUE(t.writePage(0)) << "the target died: status " << t.child().wait();

        auto proc = Target::open(t.child().pid());
        ASSERT_TRUE(proc) << proc.error().message;
        auto tracker = backend_.track(*proc);
        ASSERT_TRUE(tracker) << tracker.error().message;
        const std::vector<std::set<uint64_t>> rounds = {{1, 5, 6, 20}, {0, 31}, {}, {7}};
        for (const auto &want : rounds) {
            for (uint64_t i : want)
                ASSERT_TRUE(t.writePage(i)) << "the target died: status " << t.child().wait();
            std::vector<PageRange> ranges;
            auto r = (*tracker)->collect(ranges);
            ASSERT_TRUE(r) << r.error().message;
            EXPECT_EQ(t.pagesIn(ranges), want);
        }
        tracker->reset();

        EXPECT_EQ(t.seccompMode(), seccomp_mode) << "tracking changed the target's seccomp";
        ASSERT_TRUE(t.writePage(3));
        ASSERT_TRUE(t.command('f', 0));
        EXPECT_EQ(t.child().wait(), 128 + kill_signal)
            << "the target's own forbidden syscall must still be fatal after tracking";
    }

    UffdWpBackend backend_;
};

TEST_F(InjectTest, StrictSeccompTargetSurvivesTracking)
{
    trackUnderSeccomp("seccomp-strict", SECCOMP_MODE_STRICT, SIGKILL);
}

TEST_F(InjectTest, SeccompFilterTargetSurvivesTracking)
{
    trackUnderSeccomp("seccomp-filter", SECCOMP_MODE_FILTER, SIGSYS);
}

// What an oohd without CAP_SYS_ADMIN (but allowed to ptrace) makes of a
// process: track it in a child that dropped the capability, report the
// error code (0 on success) and message.
std::pair<int, std::string> trackWithoutSysAdmin(UffdWpBackend &backend, pid_t pid)
{
    int fds[2];
    if (::pipe(fds) < 0)
        return {-1, "pipe failed"};
    pid_t child = ::fork();
    if (child == 0) {
        ::close(fds[0]);
        struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
        std::string msg = "capset failed";
        int code = -1;
        if (::syscall(SYS_capget, &hdr, data) == 0) {
            data[CAP_TO_INDEX(CAP_SYS_ADMIN)].effective &= ~CAP_TO_MASK(CAP_SYS_ADMIN);
            data[CAP_TO_INDEX(CAP_SYS_ADMIN)].permitted &= ~CAP_TO_MASK(CAP_SYS_ADMIN);
            if (::syscall(SYS_capset, &hdr, data) == 0) {
                auto proc = Target::open(pid);
                auto t = proc ? backend.track(*proc)
                              : Result<std::unique_ptr<Tracker>>(proc.takeError());
                code = t ? 0 : t.error().code;
                msg = t ? "" : t.error().message;
            }
        }
        if (::write(fds[1], &code, sizeof(code)) != sizeof(code) ||
            ::write(fds[1], msg.data(), msg.size()) < 0)
            ::_exit(1);
        ::_exit(0);
    }
    ::close(fds[1]);
    int code = -1;
    std::string msg;
    if (::read(fds[0], &code, sizeof(code)) == sizeof(code)) {
        char buf[1024];
        for (ssize_t n; (n = ::read(fds[0], buf, sizeof(buf))) > 0;)
            msg.append(buf, static_cast<size_t>(n));
    }
    ::close(fds[0]);
    ::waitpid(child, nullptr, 0);
    return {code, msg};
}

TEST_F(InjectTest, SeccompTargetRefusedWithoutSysAdmin)
{
    for (const char *mode : {"seccomp-strict", "seccomp-filter"}) {
        SCOPED_TRACE(mode);
        SeccompTarget t(mode);
        std::string skip;
        if (!t.start(&skip))
            GTEST_SKIP() << skip;
        auto [code, msg] = trackWithoutSysAdmin(backend_, t.child().pid());
        EXPECT_EQ(code, EPERM) << msg;
        EXPECT_NE(msg.find("seccomp"), std::string::npos) << msg;
        EXPECT_NE(msg.find("CAP_SYS_ADMIN"), std::string::npos) << msg;
        EXPECT_NE(msg.find("pid " + std::to_string(t.child().pid())), std::string::npos) << msg;
        ASSERT_TRUE(t.writePage(1)) << "the target died: status " << t.child().wait();
        ASSERT_TRUE(t.command('q', 42));
        EXPECT_EQ(t.child().wait(), 42);
    }
    // A process without seccomp is tracked as before.
    ChildProcess plain({targetPath(), "read"});
    std::string ready;
    ASSERT_TRUE(plain.readLine(&ready));
    auto [code, msg] = trackWithoutSysAdmin(backend_, plain.pid());
    EXPECT_EQ(code, 0) << msg;
    plain.closeInput();
    EXPECT_EQ(resultOf(plain), 1u);
}

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

// The syscall /proc/PID/syscall says the process sleeps in, or -1 when it
// is running; waits up to 10 s for it to block.
long blockedSyscall(pid_t pid)
{
    for (int i = 0; i < 1000; ++i) {
        std::ifstream f("/proc/" + std::to_string(pid) + "/syscall");
        std::string first;
        if (f >> first && first != "running")
            return std::stol(first);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
}

TEST_F(InjectTest, InterruptedSleepResumesWithTheTimeLeft)
{
    // After the injection's stop, a relative nanosleep goes on through
    // restart_syscall with the time it had left, as after any ptrace stop:
    // not again from the start with its first argument (arm64 rewinds the
    // syscall before the stop, oohd/inject/arch.h), nor cut short.
    ChildProcess c({targetPath(), "nap", "600000"});
    std::string ready;
    ASSERT_TRUE(c.readLine(&ready));
    ASSERT_EQ(blockedSyscall(c.pid()), SYS_clock_nanosleep);
    trackRepeatedly(c.pid(), 1);
    EXPECT_EQ(blockedSyscall(c.pid()), SYS_restart_syscall);
    // Once more from inside restart_syscall.
    trackRepeatedly(c.pid(), 1);
    EXPECT_EQ(blockedSyscall(c.pid()), SYS_restart_syscall);
}

TEST_F(InjectTest, TargetBlockedInRead)
{
    ChildProcess c({targetPath(), "read"});
    std::string ready;
    ASSERT_TRUE(c.readLine(&ready));
    std::this_thread::sleep_for(std::chrono::milliseconds(20)); // let it block
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
    auto proc = Target::open(c.pid());
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
    auto proc = Target::open(c.pid());
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
    auto proc = Target::open(c.pid());
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
    ChildProcess c({targetPath(), "read"});
    std::string line;
    ASSERT_TRUE(c.readLine(&line));
    auto proc = Target::open(c.pid());
    ASSERT_TRUE(proc) << proc.error().message;
    c.closeInput();
    while (c.readLine(&line)) {
    }
    c.wait();
    EXPECT_FALSE(proc->isAlive());
    auto t = backend_.track(*proc);
    ASSERT_FALSE(t);
    EXPECT_EQ(t.error().code, ESRCH) << t.error().message;
}

} // namespace
} // namespace ooh

int main(int argc, char **argv)
{
    return ooh::test::runRootTests(argc, argv, "the injection tests");
}

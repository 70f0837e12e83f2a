// SPDX-License-Identifier: Apache-2.0
// Target: a process is opened once, checked to be the one its pidfd names,
// and read only through its /proc/PID directory fd: an exited process is
// refused by pid, and once it is gone nothing of it reads as another
// process's, even one given the same pid (clone3 with set_tid, root only).
#include "target.h"
#include "test_support.h"

#include <gtest/gtest.h>

#include <csignal>
#include <fcntl.h>
#include <fstream>
#include <linux/sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace ooh {
namespace {

// A child that sleeps until killed.
pid_t sleepingChild()
{
    pid_t pid = ::fork();
    if (pid == 0) {
        for (;;)
            ::pause();
    }
    return pid;
}

// A sleeping child given exactly `pid` (which must be free).
pid_t sleepingChildWithPid(pid_t pid)
{
    struct clone_args args = {};
    args.exit_signal = SIGCHLD;
    args.set_tid = reinterpret_cast<uint64_t>(&pid);
    args.set_tid_size = 1;
    long r = ::syscall(SYS_clone3, &args, sizeof(args));
    if (r == 0) {
        for (;;)
            ::pause();
    }
    return static_cast<pid_t>(r);
}

void killAndReap(pid_t pid)
{
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
}

UniqueFD pidfdOf(pid_t pid)
{
    return UniqueFD(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
}

bool names(const Error &e, pid_t pid)
{
    return e.message.find(std::to_string(pid)) != std::string::npos;
}

TEST(Target, OpensALiveProcess)
{
    pid_t pid = sleepingChild();
    ASSERT_GT(pid, 0);
    auto t = Target::open(pid);
    ASSERT_TRUE(t) << t.error().message;
    EXPECT_EQ(t->pid(), pid);
    EXPECT_TRUE(t->isAlive());
    EXPECT_GT(t->startTime(), 0u);
    EXPECT_EQ(t->threads(), std::vector<pid_t>{pid});
    EXPECT_NE(t->threadState(pid), '?');
    auto maps = t->readMaps();
    ASSERT_TRUE(maps) << maps.error().message;
    EXPECT_FALSE(maps->empty());

    // A copy shares the process, and outlives the original.
    Target copy = *t;
    t = makeError(EINVAL, "dropped");
    EXPECT_EQ(copy.pid(), pid);
    EXPECT_TRUE(copy.readMaps());
    killAndReap(pid);
    EXPECT_FALSE(copy.isAlive());
}

TEST(Target, ExitedProcessIsRefusedNamingThePid)
{
    pid_t pid = sleepingChild();
    ASSERT_GT(pid, 0);
    // A zombie: its pidfd and /proc files still open, but it has exited.
    ::kill(pid, SIGKILL);
    siginfo_t info{};
    ASSERT_EQ(::waitid(P_PID, pid, &info, WEXITED | WNOWAIT), 0);
    auto zombie = Target::open(pid);
    ASSERT_FALSE(zombie);
    EXPECT_EQ(zombie.error().code, ESRCH) << zombie.error().message;
    EXPECT_TRUE(names(zombie.error(), pid)) << zombie.error().message;

    ::waitpid(pid, nullptr, 0);
    auto gone = Target::open(pid);
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code, ESRCH) << gone.error().message;
    EXPECT_TRUE(names(gone.error(), pid)) << gone.error().message;
}

// The pid of the pidfd's process is given to another process between the
// pidfd and the opening of /proc/PID: refused, although /proc/PID exists.
TEST(Target, PidReusedBetweenPidfdAndProcDirIsRefused)
{
    pid_t pid = sleepingChild();
    ASSERT_GT(pid, 0);
    UniqueFD pidfd = pidfdOf(pid);
    UniqueFD pidfd2 = pidfdOf(pid);
    ASSERT_TRUE(pidfd.isValid() && pidfd2.isValid());
    killAndReap(pid);
    pid_t reused = sleepingChildWithPid(pid);
    if (reused < 0)
        GTEST_SKIP() << "clone3 with set_tid: " << std::strerror(errno);
    ASSERT_EQ(reused, pid);

    auto adopted = Target::adopt(std::move(pidfd), pid);
    ASSERT_FALSE(adopted) << "the pidfd of an exited process adopted another process";
    EXPECT_EQ(adopted.error().code, ESRCH) << adopted.error().message;
    EXPECT_TRUE(names(adopted.error(), pid)) << adopted.error().message;
    auto passed = Target::fromPidfd(std::move(pidfd2));
    ASSERT_FALSE(passed);
    EXPECT_EQ(passed.error().code, ESRCH) << passed.error().message;
    // Opening by pid now finds the new process, with its own start time.
    auto now = Target::open(pid);
    ASSERT_TRUE(now) << now.error().message;
    EXPECT_TRUE(now->isAlive());
    killAndReap(reused);
}

// Files are reached through the directory of the process that was opened:
// once it has exited they fail, never reading the new holder of its pid.
TEST(Target, FilesOfAnExitedProcessFailEvenWithItsPidReused)
{
    pid_t pid = sleepingChild();
    ASSERT_GT(pid, 0);
    auto t = Target::open(pid);
    ASSERT_TRUE(t) << t.error().message;

    // Exited, not reaped: the files still open, and read empty.
    ::kill(pid, SIGKILL);
    siginfo_t info{};
    ASSERT_EQ(::waitid(P_PID, pid, &info, WEXITED | WNOWAIT), 0);
    auto zombie_maps = t->readMaps();
    ASSERT_FALSE(zombie_maps) << "an exited process read as one without mappings";
    EXPECT_EQ(zombie_maps.error().code, ESRCH) << zombie_maps.error().message;
    EXPECT_TRUE(names(zombie_maps.error(), pid)) << zombie_maps.error().message;

    ::waitpid(pid, nullptr, 0);
    pid_t reused = sleepingChildWithPid(pid);
    if (reused < 0)
        GTEST_SKIP() << "clone3 with set_tid: " << std::strerror(errno);
    ASSERT_EQ(reused, pid);
    std::ifstream by_path("/proc/" + std::to_string(pid) + "/maps");
    std::string line;
    ASSERT_TRUE(std::getline(by_path, line)) << "the pid was not reused";

    auto maps = t->readMaps();
    ASSERT_FALSE(maps) << "read the maps of the process that took the pid";
    EXPECT_EQ(maps.error().code, ESRCH) << maps.error().message;
    for (const char *name : {"maps", "pagemap", "mem", "status"}) {
        auto fd = t->openFile(name, O_RDONLY);
        ASSERT_FALSE(fd) << name << " of the process that took the pid was opened";
        EXPECT_EQ(fd.error().code, ESRCH) << fd.error().message;
    }
    EXPECT_TRUE(t->threads().empty());
    EXPECT_EQ(t->threadState(pid), '?');
    killAndReap(reused);
}

// A process whose main thread exited while another runs on: its maps read
// through the main thread, empty. That must not read as "no mappings".
TEST(Target, MapsReadThroughAnExitedMainThreadAreAnError)
{
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        std::thread([] {
            for (;;)
                ::pause();
        }).detach();
        ::syscall(SYS_exit, 0); // this thread only
    }
    auto t = Target::open(pid);
    ASSERT_TRUE(t) << t.error().message;
    for (int i = 0; i < 500 && t->threadState(pid) != 'Z'; ++i)
        ::usleep(2000);
    ASSERT_EQ(t->threadState(pid), 'Z');
    EXPECT_TRUE(t->isAlive());
    auto maps = t->readMaps();
    ASSERT_FALSE(maps) << "a process without a main thread read as one without mappings";
    EXPECT_EQ(maps.error().code, EIO) << maps.error().message;
    killAndReap(pid);
}

TEST(Target, AccessProofIsTheTargetsOwnMem)
{
    pid_t pid = sleepingChild();
    pid_t other = sleepingChild();
    ASSERT_GT(pid, 0);
    ASSERT_GT(other, 0);
    auto t = Target::open(pid);
    ASSERT_TRUE(t) << t.error().message;
    PeerCredentials user{1, 4242, 4242};
    auto open_proc = [](pid_t p, const char *name) {
        return UniqueFD(
            ::open(("/proc/" + std::to_string(p) + "/" + name).c_str(), O_RDONLY | O_CLOEXEC));
    };

    EXPECT_TRUE(t->checkAccessProof(PeerCredentials{1, 0, 0}, UniqueFD()));
    auto none = t->checkAccessProof(user, UniqueFD());
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error().code, EPERM);
    EXPECT_TRUE(t->checkAccessProof(user, open_proc(pid, "mem")));
    for (auto [p, name] : {std::pair{other, "mem"}, std::pair{pid, "status"}}) {
        auto wrong = t->checkAccessProof(user, open_proc(p, name));
        ASSERT_FALSE(wrong) << "/proc/" << p << "/" << name << " passed for " << pid;
        EXPECT_EQ(wrong.error().code, EPERM) << wrong.error().message;
    }
    // Once the process is gone, no proof holds.
    UniqueFD late = open_proc(pid, "mem");
    killAndReap(pid);
    EXPECT_FALSE(t->checkAccessProof(user, late));
    killAndReap(other);
}

} // namespace
} // namespace ooh

int main(int argc, char **argv) { return ooh::test::runRootTests(argc, argv, "the target tests"); }

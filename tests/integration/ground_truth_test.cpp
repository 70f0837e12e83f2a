// SPDX-License-Identifier: Apache-2.0
// Ground truth: ooh-dirty-writer writes known pages (across mmap, munmap,
// mremap, brk growth, MADV_DONTNEED, mprotect, threads, kernel writes and
// fork); every page it wrote or discarded in a round must be in the next
// collected set. Runs against every backend available here, in process,
// and prints the over-report rate (ground_truth_daemon_test.cpp: via oohd).
// ExactPages*: chosen pages written, exactly those reported (exact_pages.h).
#include "backend.h"
#include "exact_pages.h"
#include "ground_truth.h"

#include <atomic>
#include <filesystem>
#include <mutex>
#include <poll.h>
#include <thread>

namespace ooh {
namespace {

struct Tracked;

class GroundTruthTest : public ::testing::TestWithParam<std::string> {
protected:
    Backend *backend()
    {
        for (auto &b : backends_)
            if (b->name() == GetParam())
                return b.get();
        return nullptr;
    }
    void SetUp() override
    {
        backends_ = makeBackends();
        Backend *b = backend();
        ASSERT_NE(b, nullptr);
        auto probe = b->probe();
        if (!probe.available)
            GTEST_SKIP() << "backend " << GetParam() << " unavailable: " << probe.reason;
        fifo_dir_ =
            std::filesystem::temp_directory_path() / ("ooh-gt-" + std::to_string(::getpid()));
        std::filesystem::create_directories(fifo_dir_);
    }
    void TearDown() override { std::filesystem::remove_all(fifo_dir_); }
    // Tracks pid with the backend under test (see Tracked).
    void track(pid_t pid, Tracked *out);
    void exactPages(bool huge);

    std::vector<std::unique_ptr<Backend>> backends_;
    std::filesystem::path fifo_dir_;
};

// Does what oohd's event loop does for a tracker: reads its events as they
// come (a target blocks in madvise() until its discard event is read).
class EventPump {
public:
    explicit EventPump(Tracker &t) : tracker_(t)
    {
        if (t.eventFd() >= 0)
            thread_ = std::thread([this] { run(); });
    }
    ~EventPump()
    {
        stop_ = true;
        if (thread_.joinable())
            thread_.join();
    }
    CollectFn collector()
    {
        return [this]() -> Result<std::vector<PageRange>> {
            std::lock_guard lock(mutex_);
            std::vector<PageRange> raw;
            OOH_TRY(tracker_.collect(raw));
            return normalizeRanges(std::move(raw));
        };
    }

private:
    void run()
    {
        while (!stop_) {
            struct pollfd pfd = {tracker_.eventFd(), POLLIN, 0};
            if (::poll(&pfd, 1, 10) > 0) {
                std::lock_guard lock(mutex_);
                auto r = tracker_.handleEvents();
                EXPECT_TRUE(r) << r.error().message;
            }
        }
    }
    Tracker &tracker_;
    std::mutex mutex_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// A process tracked by the backend under test, its events read as oohd
// would, and one collect done to close the first epoch.
struct Tracked {
    Target process;
    std::unique_ptr<Tracker> tracker;
    std::unique_ptr<EventPump> pump;
};

void GroundTruthTest::track(pid_t pid, Tracked *out)
{
    auto proc = Target::open(pid);
    ASSERT_TRUE(proc) << proc.error().message;
    out->process = std::move(*proc);
    auto tracker = backend()->track(out->process);
    ASSERT_TRUE(tracker) << tracker.error().message;
    out->tracker = std::move(*tracker);
    out->pump = std::make_unique<EventPump>(*out->tracker);
    auto first = out->pump->collector()();
    ASSERT_TRUE(first) << "first collect: " << first.error().message;
}

TEST_P(GroundTruthTest, BackendDirect)
{
    ChildProcess writer({writerPath(), "--fifo-dir", fifo_dir_.string()});
    std::string ready;
    ASSERT_TRUE(writer.readLine(&ready)) << "writer did not start";
    auto proc = Target::open(writer.pid());
    ASSERT_TRUE(proc) << proc.error().message;
    auto tracker = backend()->track(*proc);
    ASSERT_TRUE(tracker) << tracker.error().message;
    EventPump pump(**tracker);
    auto collect = pump.collector();

    Tally parent, child;
    std::unique_ptr<ChildProcess> forked;
    std::unique_ptr<Tracker> child_tracker;
    std::unique_ptr<EventPump> child_pump;
    for (int round = 1; round <= kRounds; ++round) {
        checkRound(writer, 1000 + round, collect, &parent, GetParam() + " parent");
        if (HasFatalFailure())
            return;
        if (round == kForkAtRound) {
            // After fork, the parent's writes are copy-on-write breaks of
            // write-protected pages; the child is tracked on its own.
            ASSERT_TRUE(writer.send("fork"));
            std::string line;
            ASSERT_TRUE(writer.readLine(&line));
            int child_pid = 0;
            ASSERT_EQ(std::sscanf(line.c_str(), "child %d", &child_pid), 1) << line;
            std::string base = (fifo_dir_ / std::to_string(child_pid)).string();
            forked = std::make_unique<ChildProcess>(child_pid, base + ".in", base + ".out");
            auto cproc = Target::open(child_pid);
            ASSERT_TRUE(cproc) << cproc.error().message;
            auto ct = backend()->track(*cproc);
            ASSERT_TRUE(ct) << ct.error().message;
            child_tracker = std::move(*ct);
            child_pump = std::make_unique<EventPump>(*child_tracker);
        }
        if (forked && round <= kForkAtRound + kChildRounds) {
            checkRound(*forked, 5000 + round, child_pump->collector(), &child,
                       GetParam() + " forked child");
            if (HasFatalFailure())
                return;
        }
    }
    printTally(GetParam() + " (direct)", parent);
    printTally(GetParam() + " (forked child)", child);
    expectExactPartBounded(GetParam() + " (direct)", parent);
    expectExactPartBounded(GetParam() + " (forked child)", child);
    if (forked)
        forked->send("exit");
    writer.send("exit");
    EXPECT_EQ(writer.wait(), 0);
}

// In the manner of the kernel's pagemap_ioctl.c: in a tracked mapping,
// write chosen pages, expect exactly those (none wholesale), then nothing.
// With `huge`, in a mapping of transparent huge pages.
void GroundTruthTest::exactPages(bool huge)
{
    test::PageToucher toucher;
    bool skip = false;
    std::string err = test::startToucher(toucher, huge, &skip);
    if (skip)
        GTEST_SKIP() << err;
    ASSERT_TRUE(err.empty()) << err;
    Tracked tracked;
    ASSERT_NO_FATAL_FAILURE(track(toucher.pid(), &tracked));
    std::string done;
    std::string diff =
        test::runExactPages(toucher, tracked.pump->collector(),
                            test::hugeGranule(GetParam(), toucher.pageSize()), &done);
    EXPECT_TRUE(diff.empty()) << GetParam() << ": " << diff;
    std::printf("[exact pages] %s%s: %s\n", GetParam().c_str(), huge ? ", huge pages" : "",
                done.c_str());
}

TEST_P(GroundTruthTest, ExactPages) { exactPages(false); }

TEST_P(GroundTruthTest, ExactPagesOfHugePages) { exactPages(true); }

std::vector<std::string> backendNames()
{
    std::vector<std::string> names;
    for (auto &b : makeBackends())
        names.emplace_back(b->name());
    return names;
}

INSTANTIATE_TEST_SUITE_P(Backends, GroundTruthTest, ::testing::ValuesIn(backendNames()),
                         [](const auto &info) {
                             std::string n = info.param;
                             std::replace(n.begin(), n.end(), '-', '_');
                             return n;
                         });

} // namespace
} // namespace ooh

int main(int argc, char **argv)
{
    return ooh::test::runRootTests(argc, argv, "the ground-truth tests");
}

// SPDX-License-Identifier: Apache-2.0
// libooh self-tracking (ooh/self.h), against what this process wrote: exact
// pages, mappings made, replaced and moved inside a tracked range, discards,
// shared mappings, threads, fork, and a ground truth over many rounds.
// Needs no root: userfaultfd in user mode only is open to every user.
#include "ooh/self.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

const uint64_t kPage = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));

struct Collected {
    std::vector<ooh_range> ranges;
    long pages = 0;

    // Exactly reported pages, as addresses.
    std::set<uint64_t> exact() const
    {
        std::set<uint64_t> out;
        for (const auto &r : ranges)
            if (!(r.flags & OOH_RANGE_WHOLESALE))
                for (uint64_t a = r.start; a < r.end; a += kPage)
                    out.insert(a);
        return out;
    }
    // Every reported page, exact or wholesale.
    bool covers(uint64_t addr) const
    {
        for (const auto &r : ranges)
            if (addr >= r.start && addr < r.end)
                return true;
        return false;
    }
    bool wholly(uint64_t start, uint64_t end) const
    {
        for (uint64_t a = start; a < end; a += kPage) {
            bool found = false;
            for (const auto &r : ranges)
                found |= (r.flags & OOH_RANGE_WHOLESALE) && a >= r.start && a < r.end;
            if (!found)
                return false;
        }
        return true;
    }
};

class SelfTracking : public ::testing::Test {
protected:
    void SetUp() override
    {
        int r = ooh_self_open(&self_);
        if (r == -ENOTSUP || r == -EPERM)
            GTEST_SKIP() << "self-tracking unavailable here: " << ooh_self_last_error(self_);
        ASSERT_EQ(r, 0) << ooh_self_last_error(self_);
    }
    void TearDown() override
    {
        ooh_self_close(self_);
        for (auto [p, len] : maps_)
            ::munmap(p, len);
    }

    uint8_t *map(size_t pages, int prot = PROT_READ | PROT_WRITE,
                 int flags = MAP_PRIVATE | MAP_ANONYMOUS)
    {
        void *p = ::mmap(nullptr, pages * kPage, prot, flags, -1, 0);
        EXPECT_NE(p, MAP_FAILED) << std::strerror(errno);
        ::madvise(p, pages * kPage, MADV_NOHUGEPAGE);
        maps_.push_back({p, pages * kPage});
        return static_cast<uint8_t *>(p);
    }
    void track(void *p, size_t pages)
    {
        ASSERT_EQ(ooh_self_track(self_, p, pages * kPage), 0) << ooh_self_last_error(self_);
    }
    Collected collect()
    {
        Collected c;
        c.pages = ooh_self_collect(
            self_,
            [](void *ctx, const ooh_range *r, size_t n) {
                auto *v = static_cast<std::vector<ooh_range> *>(ctx);
                v->insert(v->end(), r, r + n);
            },
            &c.ranges);
        EXPECT_GE(c.pages, 0) << ooh_self_last_error(self_);
        return c;
    }
    static uint64_t addr(const void *p, size_t page = 0)
    {
        return reinterpret_cast<uint64_t>(p) + page * kPage;
    }

    ooh_self *self_ = nullptr;
    std::vector<std::pair<void *, size_t>> maps_;
};

TEST_F(SelfTracking, ReportsExactlyThePagesWritten)
{
    uint8_t *m = map(1024);
    for (size_t p = 0; p < 1024; p += 3)
        m[p * kPage] = 1; // written before tracking: not reported
    track(m, 1024);
    EXPECT_TRUE(collect().ranges.empty());
    std::set<uint64_t> want;
    for (size_t p : {0ul, 1ul, 511ul, 512ul, 1023ul}) {
        m[p * kPage + 100] = 2;
        want.insert(addr(m, p));
    }
    auto c = collect();
    EXPECT_EQ(c.exact(), want);
    EXPECT_EQ(c.pages, 5);
    EXPECT_TRUE(collect().ranges.empty()) << "a collect re-arms";
    m[7 * kPage] = 3; // a page written again after a collect
    EXPECT_EQ(collect().exact(), std::set<uint64_t>{addr(m, 7)});
}

TEST_F(SelfTracking, ReadsAreNotWrites)
{
    uint8_t *m = map(64);
    for (size_t p = 0; p < 64; ++p)
        m[p * kPage] = 1;
    track(m, 64);
    collect();
    volatile uint64_t sum = 0;
    for (size_t p = 0; p < 64; ++p)
        sum = sum + m[p * kPage];
    EXPECT_TRUE(collect().ranges.empty());
}

TEST_F(SelfTracking, OnlyTrackedRangesAreReported)
{
    uint8_t *tracked = map(16), *other = map(16);
    track(tracked, 16);
    collect();
    tracked[kPage] = 1;
    other[kPage] = 1;
    auto c = collect();
    EXPECT_EQ(c.exact(), std::set<uint64_t>{addr(tracked, 1)});
    EXPECT_FALSE(c.covers(addr(other, 1)));
    ASSERT_EQ(ooh_self_untrack(self_, tracked, 16 * kPage), 0) << ooh_self_last_error(self_);
    tracked[2 * kPage] = 1;
    EXPECT_TRUE(collect().ranges.empty());
}

TEST_F(SelfTracking, MappingsMadeInATrackedReservationAreReportedWhole)
{
    // A collector reserves address space and maps heap sections into it.
    uint8_t *res = map(4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
    track(res, 4096);
    EXPECT_TRUE(collect().ranges.empty());
    void *sec = ::mmap(res + 100 * kPage, 50 * kPage, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    ASSERT_NE(sec, MAP_FAILED);
    res[120 * kPage] = 1;
    auto c = collect();
    EXPECT_TRUE(c.wholly(addr(res, 100), addr(res, 150))) << "a new mapping is reported whole";
    // From then on it is tracked exactly.
    res[130 * kPage] = 1;
    EXPECT_EQ(collect().exact(), std::set<uint64_t>{addr(res, 130)});
}

TEST_F(SelfTracking, ReplacedMappingIsReportedWhole)
{
    uint8_t *m = map(32);
    for (size_t p = 0; p < 32; ++p)
        m[p * kPage] = 1;
    track(m, 32);
    collect();
    // Unmapped and mapped again at the same place, then only read.
    void *again = ::mmap(m + 8 * kPage, 8 * kPage, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    ASSERT_NE(again, MAP_FAILED);
    auto c = collect();
    EXPECT_TRUE(c.wholly(addr(m, 8), addr(m, 16)));
}

TEST_F(SelfTracking, MovedMappingIsReportedWholeWhereItLands)
{
    uint8_t *res = map(256, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
    void *src = ::mmap(res, 16 * kPage, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    ASSERT_NE(src, MAP_FAILED);
    for (size_t p = 0; p < 16; ++p)
        res[p * kPage] = 1;
    track(res, 256);
    collect();
    void *dst =
        ::mremap(res, 16 * kPage, 16 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED, res + 128 * kPage);
    ASSERT_NE(dst, MAP_FAILED) << std::strerror(errno);
    auto c = collect();
    EXPECT_TRUE(c.wholly(addr(res, 128), addr(res, 144)));
}

TEST_F(SelfTracking, DiscardedPagesAreReported)
{
    uint8_t *m = map(64);
    for (size_t p = 0; p < 64; ++p)
        m[p * kPage] = 1;
    track(m, 64);
    collect();
    // Zero now, written by nobody: a checkpoint or collector must see it.
    ASSERT_EQ(::madvise(m + 10 * kPage, 4 * kPage, MADV_DONTNEED), 0);
    auto c = collect();
    for (size_t p = 10; p < 14; ++p)
        EXPECT_TRUE(c.covers(addr(m, p))) << "discarded page " << p;
}

TEST_F(SelfTracking, SharedMappingsAreReportedAtEveryCollect)
{
    uint8_t *s = map(8, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS);
    track(s, 8);
    for (int round = 0; round < 2; ++round)
        EXPECT_TRUE(collect().wholly(addr(s), addr(s, 8))) << "round " << round;
}

TEST_F(SelfTracking, WritesOfEveryThreadAreReported)
{
    uint8_t *m = map(4 * 256);
    track(m, 4 * 256);
    collect();
    std::vector<std::thread> threads;
    for (size_t t = 0; t < 4; ++t)
        threads.emplace_back([m, t] {
            for (size_t p = t * 256; p < (t + 1) * 256; p += 5)
                m[p * kPage] = static_cast<uint8_t>(t + 1);
        });
    for (auto &t : threads)
        t.join();
    std::set<uint64_t> want;
    for (size_t p = 0; p < 4 * 256; ++p)
        if ((p % 256) % 5 == 0)
            want.insert(addr(m, p));
    EXPECT_EQ(collect().exact(), want);
}

TEST_F(SelfTracking, DiscardingThreadIsNotStalled)
{
    // The kernel makes MADV_DONTNEED on tracked memory wait until the
    // notice is read; the handle's own thread reads it even while no
    // collect runs.
    uint8_t *m = map(64);
    for (size_t p = 0; p < 64; ++p)
        m[p * kPage] = 1;
    track(m, 64);
    collect();
    std::atomic<bool> done{false};
    std::thread t([&] {
        for (int i = 0; i < 100; ++i)
            ::madvise(m + (i % 64) * kPage, kPage, MADV_DONTNEED);
        done = true;
    });
    for (int i = 0; i < 500 && !done; ++i)
        ::usleep(10000);
    EXPECT_TRUE(done) << "madvise(MADV_DONTNEED) blocked";
    // Closing the handle releases a blocked madvise, so join after it.
    ooh_self_close(self_);
    self_ = nullptr;
    t.join();
}

TEST_F(SelfTracking, AForkedChildMustOpenItsOwn)
{
    uint8_t *m = map(8);
    track(m, 8);
    collect();
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        int status = 0;
        long r = ooh_self_collect(
            self_, [](void *, const ooh_range *, size_t) {}, nullptr);
        if (r != -ECHILD || !std::strstr(ooh_self_last_error(self_), "fork"))
            status |= 1;
        ooh_self_close(self_); // closes without touching the parent's state
        ooh_self *mine = nullptr;
        if (ooh_self_open(&mine) != 0 || ooh_self_track(mine, m, 8 * kPage) != 0)
            status |= 2;
        m[3 * kPage] = 9;
        std::vector<ooh_range> got;
        ooh_self_collect(
            mine,
            [](void *ctx, const ooh_range *r, size_t n) {
                auto *v = static_cast<std::vector<ooh_range> *>(ctx);
                v->insert(v->end(), r, r + n);
            },
            &got);
        if (got.size() != 1 || got[0].start != addr(m, 3) || got[0].end != addr(m, 4))
            status |= 4;
        ooh_self_close(mine);
        ::_exit(status);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status) & 1, 0) << "the child's calls on the parent's handle succeeded";
    EXPECT_EQ(WEXITSTATUS(status) & 2, 0) << "the child could not open its own";
    EXPECT_EQ(WEXITSTATUS(status) & 4, 0) << "the child's handle did not report its write";
    // The parent's handle is unaffected by the child.
    m[5 * kPage] = 1;
    EXPECT_EQ(collect().exact(), std::set<uint64_t>{addr(m, 5)});
}

// Many rounds of random writes, maps, unmaps and discards: every page
// written or changed in a round is reported in that round's collect.
TEST_F(SelfTracking, GroundTruthOverManyRounds)
{
    // The bound on the exact part below counts small pages. Where
    // transparent huge pages are "always" (Debian's kernels), a first write
    // populates a whole huge page, which a collect reports whole (the
    // ExactPagesOfHugePages tests cover that): this test keeps to small ones.
    ASSERT_EQ(::prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0), 0);
    struct ThpBack {
        ~ThpBack() { ::prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0); }
    } thp_back;
    constexpr size_t kPages = 8192;
    uint8_t *res = map(kPages, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
    ASSERT_NE(::mmap(res, kPages / 2 * kPage, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
              MAP_FAILED);
    track(res, kPages);
    collect();
    std::mt19937_64 rng(42);
    size_t mapped_end = kPages / 2; // [0, mapped_end) is mapped
    uint64_t missed = 0, written_total = 0, exact_total = 0;
    for (int round = 0; round < 50; ++round) {
        std::vector<uint64_t> changed;
        int op = static_cast<int>(rng() % 4);
        if (op == 0 && mapped_end < kPages) {
            size_t grow = std::min<size_t>(kPages - mapped_end, 64);
            ASSERT_NE(::mmap(res + mapped_end * kPage, grow * kPage, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
                      MAP_FAILED);
            mapped_end += grow;
        } else if (op == 1) {
            size_t p = rng() % mapped_end, n = 1 + rng() % 8;
            n = std::min(n, mapped_end - p);
            ::madvise(res + p * kPage, n * kPage, MADV_DONTNEED);
            for (size_t i = p; i < p + n; ++i)
                changed.push_back(addr(res, i));
        }
        size_t writes = 1 + rng() % 200;
        for (size_t i = 0; i < writes; ++i) {
            size_t p = rng() % mapped_end;
            res[p * kPage + rng() % kPage] = static_cast<uint8_t>(rng());
            changed.push_back(addr(res, p));
        }
        auto c = collect();
        for (uint64_t a : changed)
            if (!c.covers(a))
                ++missed;
        written_total += changed.size();
        exact_total += c.exact().size();
    }
    EXPECT_EQ(missed, 0u) << "pages written or discarded but not reported";
    // The exactly reported part stays close to what was written (repeated
    // writes to a page count once in a collect, so this bounds from above).
    EXPECT_LE(exact_total, written_total) << "exact part larger than the writes";
}

// The choice of mechanism (the PML ring's own ground truth runs in the vm
// suite, where the OoH guest module is).
TEST(SelfTrackingChoice, PmlWithoutTheModuleSaysSo)
{
    struct stat st;
    if (::stat("/dev/ooh-ctl", &st) == 0)
        GTEST_SKIP() << "the OoH guest module is loaded here";
    ooh_self *s = nullptr;
    EXPECT_EQ(ooh_self_open_backend(&s, OOH_SELF_PML), -ENODEV);
    EXPECT_NE(std::string(ooh_self_last_error(s)).find("guest module is not loaded"),
              std::string::npos)
        << ooh_self_last_error(s);
    EXPECT_STREQ(ooh_self_backend(s), "");
    EXPECT_EQ(ooh_self_track(s, nullptr, kPage), -EBADF);
    ooh_self_close(s);
}

TEST(SelfTrackingChoice, AutoTakesUffdWhereItWorks)
{
    ooh_self *s = nullptr;
    int r = ooh_self_open_backend(&s, OOH_SELF_UFFD);
    ooh_self_close(s);
    if (r == -ENOTSUP || r == -EPERM)
        GTEST_SKIP() << "userfaultfd write-protect unavailable here";
    ASSERT_EQ(ooh_self_open_backend(&s, OOH_SELF_AUTO), 0) << ooh_self_last_error(s);
    EXPECT_STREQ(ooh_self_backend(s), "uffd");
    ooh_self_close(s);
    ASSERT_EQ(ooh_self_open(&s), 0) << ooh_self_last_error(s);
    EXPECT_STREQ(ooh_self_backend(s), "uffd");
    ooh_self_close(s);
}

TEST(SelfTrackingChoice, UnknownMechanismIsRefused)
{
    ooh_self *s = nullptr;
    EXPECT_EQ(ooh_self_open_backend(&s, 7), -EINVAL);
    EXPECT_EQ(s, nullptr);
}

} // namespace

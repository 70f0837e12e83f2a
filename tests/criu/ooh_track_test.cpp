// SPDX-License-Identifier: Apache-2.0
// Unit tests of the ooh CRIU plugin's pure logic (criu-plugin/ooh_track.c):
// range sets, range-to-bitmap translation, the state kept in the images.
#include "ooh_track.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <set>
#include <vector>

namespace {

constexpr uint64_t kPage = 4096;

struct RangeSet {
    ooh_rangeset set;
    RangeSet() { ooh_rangeset_init(&set); }
    ~RangeSet() { ooh_rangeset_free(&set); }
    int add(uint64_t start, uint64_t end, uint32_t flags = 0)
    {
        ooh_range r{start, end, flags, 0};
        return ooh_rangeset_append(&set, &r, 1, kPage);
    }
};

std::vector<uint64_t> bitmapFor(const RangeSet &rs, uint64_t start, uint64_t end)
{
    std::vector<uint64_t> bm(ooh_bitmap_words(start, end, kPage), 0);
    ooh_rangeset_to_bitmap(&rs.set, start, end, kPage, bm.data());
    return bm;
}

bool bit(const std::vector<uint64_t> &bm, uint64_t n) { return bm[n / 64] >> (n % 64) & 1; }

TEST(OohTrackRangeSet, AcceptsAscendingAndMergesAdjacent)
{
    RangeSet rs;
    EXPECT_EQ(rs.add(0x1000, 0x3000), 0);
    EXPECT_EQ(rs.add(0x3000, 0x4000, OOH_RANGE_WHOLESALE), 0);
    EXPECT_EQ(rs.add(0x8000, 0x9000), 0);
    ASSERT_EQ(rs.set.nr, 2u);
    EXPECT_EQ(rs.set.ranges[0].end, 0x4000u);
    EXPECT_EQ(rs.set.ranges[0].flags, OOH_RANGE_WHOLESALE);
    EXPECT_EQ(ooh_rangeset_pages(&rs.set, kPage), 4u);
}

TEST(OohTrackRangeSet, RejectsWhatCannotBeTrusted)
{
    RangeSet rs;
    ASSERT_EQ(rs.add(0x4000, 0x6000), 0);
    EXPECT_EQ(rs.add(0x5000, 0x7000), -EINVAL) << "overlap";
    EXPECT_EQ(rs.add(0x1000, 0x2000), -EINVAL) << "descending";
    EXPECT_EQ(rs.add(0x8000, 0x8000), -EINVAL) << "empty";
    EXPECT_EQ(rs.add(0x9000, 0x9800), -EINVAL) << "unaligned";
    ooh_range r{0x10000, 0x11000, 0, 0};
    EXPECT_EQ(ooh_rangeset_append(&rs.set, &r, 1, 3000), -EINVAL) << "bad page size";
    EXPECT_EQ(rs.set.nr, 1u);
}

TEST(OohTrackBitmap, TranslatesRangesInsideAndAcrossAVma)
{
    RangeSet rs;
    ASSERT_EQ(rs.add(0x10000, 0x12000), 0);    // before and into the VMA
    ASSERT_EQ(rs.add(0x15000, 0x16000), 0);    // inside
    ASSERT_EQ(rs.add(0x1f000, 0x30000), 0);    // last page and beyond
    auto bm = bitmapFor(rs, 0x11000, 0x20000); // 15 pages
    std::set<uint64_t> expect{0, 4, 14};
    for (uint64_t n = 0; n < 15; n++)
        EXPECT_EQ(bit(bm, n), expect.count(n) == 1) << "page " << n;
    EXPECT_EQ(bm[0] >> 15, 0u) << "no bit past the VMA";
}

TEST(OohTrackBitmap, VmaWithoutWritesStaysClean)
{
    RangeSet rs;
    ASSERT_EQ(rs.add(0x1000, 0x2000), 0);
    ASSERT_EQ(rs.add(0x100000, 0x200000), 0);
    auto bm = bitmapFor(rs, 0x10000, 0x20000);
    for (uint64_t w : bm)
        EXPECT_EQ(w, 0u);
}

TEST(OohTrackBitmap, FillCoversEveryPageAndWordBoundaries)
{
    for (uint64_t pages : {1u, 63u, 64u, 65u, 130u}) {
        std::vector<uint64_t> bm(ooh_bitmap_words(0, pages * kPage, kPage) + 1, 0);
        ooh_bitmap_fill(bm.data(), 0, pages * kPage, kPage);
        for (uint64_t n = 0; n < pages; n++)
            ASSERT_TRUE(bit(bm, n)) << pages << " pages, page " << n;
        EXPECT_FALSE(bit(bm, pages)) << pages << " pages";
    }
}

// Against a naive page-by-page model, on random sets and VMAs.
TEST(OohTrackBitmap, MatchesPerPageModel)
{
    std::mt19937_64 rng(42);
    for (int round = 0; round < 200; round++) {
        RangeSet rs;
        std::set<uint64_t> written; // page numbers
        uint64_t page = rng() % 8;
        while (page < 600) {
            uint64_t len = 1 + rng() % 70;
            ASSERT_EQ(rs.add(page * kPage, (page + len) * kPage), 0);
            for (uint64_t p = page; p < page + len; p++)
                written.insert(p);
            page += len + rng() % 90; // gaps of 0 merge
        }
        uint64_t first = rng() % 500, last = first + 1 + rng() % 200;
        auto bm = bitmapFor(rs, first * kPage, last * kPage);
        for (uint64_t p = first; p < last; p++)
            ASSERT_EQ(bit(bm, p - first), written.count(p) == 1)
                << "round " << round << " page " << p;
    }
}

TEST(OohTrackState, RoundTripsAndRejectsGarbage)
{
    ooh_task_state in{123456789, 987654321, 42}, out{};
    char buf[256];
    int n = ooh_state_format(buf, sizeof(buf), &in);
    ASSERT_GT(n, 0);
    EXPECT_EQ(std::strlen(buf), size_t(n));
    ASSERT_EQ(ooh_state_parse(buf, &out), 0);
    EXPECT_EQ(out.start_time, in.start_time);
    EXPECT_EQ(out.session, in.session);
    EXPECT_EQ(out.epoch, in.epoch);

    EXPECT_EQ(ooh_state_format(buf, 10, &in), -ENOSPC);
    EXPECT_EQ(ooh_state_parse("", &out), -EINVAL);
    EXPECT_EQ(ooh_state_parse("ooh-track 2\nstart_time 1\nsession 2\nepoch 3\n", &out), -EINVAL);
    EXPECT_EQ(ooh_state_parse("ooh-track 1\nstart_time 1\nepoch 3\n", &out), -EINVAL);
}

TEST(OohTrackState, ExactOnlyWhenTheCollectFollowsTheParent)
{
    ooh_task_state parent{100, 7000, 5};
    ooh_task_state now{100, 7000, 6};
    EXPECT_TRUE(ooh_set_is_exact(false, &parent, &now));

    EXPECT_FALSE(ooh_set_is_exact(true, &parent, &now)) << "tracked by this dump";
    EXPECT_FALSE(ooh_set_is_exact(false, nullptr, &now)) << "parent without ooh state";
    ooh_task_state skipped = now;
    skipped.epoch = 7;
    EXPECT_FALSE(ooh_set_is_exact(false, &parent, &skipped)) << "a collect in between";
    ooh_task_state same = now;
    same.epoch = 5;
    EXPECT_FALSE(ooh_set_is_exact(false, &parent, &same));
    ooh_task_state reused = now;
    reused.start_time = 101;
    EXPECT_FALSE(ooh_set_is_exact(false, &parent, &reused)) << "pid reuse";
    ooh_task_state retracked = now;
    retracked.session = 7001;
    EXPECT_FALSE(ooh_set_is_exact(false, &parent, &retracked)) << "new tracking session";
    // An oohd that names no session (id 0) cannot prove anything.
    ooh_task_state unnamed_parent{100, 0, 5};
    ooh_task_state unnamed{100, 0, 6};
    EXPECT_FALSE(ooh_set_is_exact(false, &unnamed_parent, &unnamed)) << "no session id";
}

TEST(OohTrackProcStat, ParsesStateAndStartTime)
{
    char state = 0;
    uint64_t start = 0;
    const char *line =
        "1234 (a b) c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 "
        "5551212 1000000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0\n";
    ASSERT_EQ(ooh_parse_proc_stat(line, &state, &start), 0);
    EXPECT_EQ(state, 'S');
    EXPECT_EQ(start, 5551212u);
    EXPECT_EQ(ooh_parse_proc_stat("1234 (x) Z 1 2", &state, &start), -EINVAL);
    EXPECT_EQ(ooh_parse_proc_stat("garbage", &state, &start), -EINVAL);
}

} // namespace

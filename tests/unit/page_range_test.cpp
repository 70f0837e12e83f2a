// SPDX-License-Identifier: Apache-2.0
// normalizeRanges: sorted, merged, never drops a byte, wholesale wins.
#include "page_range.h"

#include <gtest/gtest.h>
#include <random>

namespace ooh {
namespace {

TEST(PageRange, MergesAdjacentAndOverlapping)
{
    auto out = normalizeRanges(
        {{0x3000, 0x4000}, {0x1000, 0x2000}, {0x2000, 0x3000}, {0x8000, 0x9000}, {0x8800, 0xa000}});
    std::vector<PageRange> want{{0x1000, 0x4000}, {0x8000, 0xa000}};
    EXPECT_EQ(out, want);
}

TEST(PageRange, DropsEmpty)
{
    EXPECT_TRUE(normalizeRanges({{0x1000, 0x1000}, {0x2000, 0x1000}}).empty());
}

TEST(PageRange, WholesaleWinsOverlapAndSplits)
{
    auto out = normalizeRanges({{0x1000, 0x5000, false}, {0x2000, 0x3000, true}});
    std::vector<PageRange> want{
        {0x1000, 0x2000, false}, {0x2000, 0x3000, true}, {0x3000, 0x5000, false}};
    EXPECT_EQ(out, want);
}

TEST(PageRange, RandomizedCoverageIsPreserved)
{
    std::mt19937_64 rng(42);
    for (int iter = 0; iter < 200; ++iter) {
        std::vector<PageRange> in;
        std::vector<int> covered(256, 0), whole(256, 0);
        for (int i = 0; i < 20; ++i) {
            uint64_t s = rng() % 256, e = s + rng() % 16;
            if (e > 256)
                e = 256;
            bool w = rng() % 3 == 0;
            in.push_back({s * 4096, e * 4096, w});
            for (uint64_t p = s; p < e; ++p) {
                covered[p] = 1;
                whole[p] |= w;
            }
        }
        auto out = normalizeRanges(in);
        std::vector<int> got(256, 0), got_whole(256, 0);
        for (size_t i = 0; i < out.size(); ++i) {
            if (i) {
                ASSERT_LE(out[i - 1].end, out[i].start);
            }
            for (uint64_t p = out[i].start / 4096; p < out[i].end / 4096; ++p) {
                got[p] = 1;
                got_whole[p] = out[i].wholesale;
            }
        }
        ASSERT_EQ(got, covered);
        ASSERT_EQ(got_whole, whole);
        EXPECT_EQ(countPages(out, 4096),
                  static_cast<uint64_t>(std::count(covered.begin(), covered.end(), 1)));
    }
}

} // namespace
} // namespace ooh

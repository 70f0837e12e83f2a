// SPDX-License-Identifier: Apache-2.0
// Framing: round trips, size limits, malformed and typeless messages.
#include "wire.h"

#include <gtest/gtest.h>

namespace ooh {
namespace {

TEST(Wire, FullChunkRoundTripsWithinTheLimit)
{
    // Worst case for the size: large gaps and lengths (as large as fit in
    // 64-bit addresses), every range wholesale.
    const uint64_t page = 4096;
    wire::Envelope e;
    e.set_request_id(42);
    auto *chunk = e.mutable_collect_chunk();
    chunk->set_page_size(page);
    std::vector<PageRange> big;
    uint64_t addr = 0;
    for (size_t i = 0; i < wire::kMaxRangesPerChunk; ++i) {
        uint64_t gap = (1ull << 40) * page, len = (1ull << 40) * page;
        if (addr > UINT64_MAX - gap - len) {
            gap = page;
            len = page;
        }
        big.push_back({addr + gap, addr + gap + len, true});
        addr = big.back().end;
    }
    wire::encodeRanges(chunk, big.data(), big.size(), page);
    auto bytes = wire::encode(e);
    ASSERT_TRUE(bytes) << "a full chunk must fit in one message";
    auto back = wire::decode(bytes->data(), bytes->size());
    ASSERT_TRUE(back);
    EXPECT_EQ(back->request_id(), 42u);
    std::vector<PageRange> decoded;
    ASSERT_TRUE(wire::decodeRanges(back->collect_chunk(), decoded));
    EXPECT_EQ(decoded, big);
}

TEST(Wire, RangesRoundTrip)
{
    std::vector<PageRange> ranges{{0x1000, 0x3000, false},
                                  {0x7f0000000000, 0x7f0000001000, true},
                                  {0x7ffffffff000, 0x800000000000, false}};
    wire::CollectChunk chunk;
    chunk.set_page_size(4096);
    wire::encodeRanges(&chunk, ranges.data(), ranges.size(), 4096);
    std::vector<PageRange> out;
    ASSERT_TRUE(wire::decodeRanges(chunk, out));
    EXPECT_EQ(out, ranges);
}

TEST(Wire, MalformedRangesAreRejected)
{
    std::vector<PageRange> out;
    wire::CollectChunk odd;
    odd.set_page_size(4096);
    odd.add_page_runs(1);
    EXPECT_FALSE(wire::decodeRanges(odd, out));
    wire::CollectChunk no_page;
    no_page.add_page_runs(1);
    no_page.add_page_runs(1);
    EXPECT_FALSE(wire::decodeRanges(no_page, out));
    wire::CollectChunk overflow;
    overflow.set_page_size(4096);
    overflow.add_page_runs(UINT64_MAX / 4096);
    overflow.add_page_runs(2);
    EXPECT_FALSE(wire::decodeRanges(overflow, out));
    wire::CollectChunk bad_index;
    bad_index.set_page_size(4096);
    bad_index.add_page_runs(1);
    bad_index.add_page_runs(1);
    bad_index.add_wholesale(1);
    EXPECT_FALSE(wire::decodeRanges(bad_index, out));
}

TEST(Wire, RejectsOversized)
{
    std::string big(wire::kMaxMessageBytes + 1, '\0');
    auto r = wire::decode(big.data(), big.size());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EMSGSIZE);
}

TEST(Wire, RejectsMalformedAndTypeless)
{
    const char bad[] = "\xff\xff\xff";
    auto r = wire::decode(bad, 3);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EBADMSG);
    auto empty = wire::decode("", 0);
    ASSERT_FALSE(empty);
    EXPECT_EQ(empty.error().code, EPROTO);
}

} // namespace
} // namespace ooh

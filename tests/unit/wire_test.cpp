// SPDX-License-Identifier: Apache-2.0
// Framing: round trips, size limits, malformed and typeless messages.
#include "wire.h"

#include <gtest/gtest.h>

namespace ooh {
namespace {

TEST(Wire, RoundTrip)
{
    wire::Envelope e;
    e.set_request_id(42);
    auto *chunk = e.mutable_collect_chunk();
    chunk->set_pid(7);
    for (size_t i = 0; i < wire::kMaxRangesPerChunk; ++i) {
        auto *r = chunk->add_ranges();
        // Worst case for the varint sizes: 56-bit addresses.
        r->set_start((1ull << 56) - 4096 * (i + 2));
        r->set_end((1ull << 56) - 4096 * (i + 1));
        r->set_wholesale(true);
    }
    auto bytes = wire::encode(e);
    ASSERT_TRUE(bytes) << "a full chunk must fit in one message";
    auto back = wire::decode(bytes->data(), bytes->size());
    ASSERT_TRUE(back);
    EXPECT_EQ(back->request_id(), 42u);
    EXPECT_EQ(back->collect_chunk().ranges_size(), static_cast<int>(wire::kMaxRangesPerChunk));
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

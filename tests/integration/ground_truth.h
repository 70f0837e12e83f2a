// SPDX-License-Identifier: Apache-2.0
// Ground-truth rounds shared by the direct and through-oohd tests: the
// writer works, we collect, and every page it wrote or discarded must be in
// the collected set, and what is reported wholesale must lie within what
// the writer says it mapped, moved, grew, discarded or shares.
#pragma once

#include "page_range.h"
#include "result.h"
#include "test_support.h"

#include <cstdio>
#include <functional>
#include <gtest/gtest.h>
#include <string>
#include <unistd.h>

namespace ooh {

using test::ChildProcess;
using test::GroundTruth;

const uint64_t kPage = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
constexpr int kRounds = 40;
constexpr int kForkAtRound = 12;
constexpr int kChildRounds = 12;

using CollectFn = std::function<Result<std::vector<PageRange>>()>;

struct Tally {
    uint64_t truth_pages = 0;
    uint64_t reported_pages = 0;
    uint64_t wholesale_pages = 0;
    uint64_t allowed_wholesale_pages = 0;
    uint64_t rounds = 0;
    std::vector<PageRange> last_discarded; // the previous round's discards
};

// One round: the writer works, then we collect and compare.
inline void checkRound(ChildProcess &writer, uint64_t seed, const CollectFn &collect, Tally *tally,
                       const std::string &what)
{
    GroundTruth truth;
    ASSERT_TRUE(test::runWriterRound(writer, seed, &truth)) << what << ": writer failed";
    auto collected = collect();
    ASSERT_TRUE(collected) << what << ": collect failed: " << collected.error().message;
    auto missing = test::missingPages(*collected, truth.written, kPage);
    auto missing_discarded = test::missingPages(*collected, truth.discarded, kPage);
    ASSERT_TRUE(missing.empty()) << what << " round seed " << seed << ": " << missing.size()
                                 << " written pages not reported, first at 0x" << std::hex
                                 << missing.front();
    ASSERT_TRUE(missing_discarded.empty())
        << what << " round seed " << seed << ": " << missing_discarded.size()
        << " discarded pages not reported, first at 0x" << std::hex << missing_discarded.front();
    // Over-reporting, the wholesale half: a tracker that reports every
    // mapping whole at every collect misses nothing and must fail here.
    auto bound = test::boundWholesale(*collected, truth, tally->last_discarded, kPage);
    ASSERT_EQ(bound.outside_pages, 0u)
        << what << " round seed " << seed << ": " << test::describe(bound);
    tally->last_discarded = truth.discarded;
    tally->truth_pages += countPages(normalizeRanges(truth.written), kPage);
    tally->reported_pages += countPages(*collected, kPage);
    tally->wholesale_pages += bound.wholesale_pages;
    tally->allowed_wholesale_pages += bound.allowed_pages;
    tally->rounds++;
}

inline void printTally(const std::string &what, const Tally &t)
{
    double over = t.truth_pages ? double(t.reported_pages) / double(t.truth_pages) : 0;
    double exact_over =
        t.truth_pages ? double(t.reported_pages - t.wholesale_pages) / double(t.truth_pages) : 0;
    // Wholesale pages are new, moved or grown mappings, discards and shared
    // mappings, reported whole by design (at most "allowed" of them); the
    // exact part shows the tracking itself.
    std::printf("[ground truth] %-28s rounds %3llu  written %6llu  reported %7llu (wholesale "
                "%7llu, allowed %7llu)  over-report x%.2f, exact part x%.2f  missed 0\n",
                what.c_str(), (unsigned long long)t.rounds, (unsigned long long)t.truth_pages,
                (unsigned long long)t.reported_pages, (unsigned long long)t.wholesale_pages,
                (unsigned long long)t.allowed_wholesale_pages, over, exact_over);
}

// Never missing a page is half of the job; the pages reported exactly
// (not wholesale) must also be close to those written, or a backend that
// reports what nobody wrote passes. 1.03-1.08x is what uffd-wp gives here.
constexpr double kMaxExactOverReport = 1.5;

inline void expectExactPartBounded(const std::string &what, const Tally &t)
{
    if (t.truth_pages == 0)
        return;
    double exact_over = double(t.reported_pages - t.wholesale_pages) / double(t.truth_pages);
    EXPECT_LE(exact_over, kMaxExactOverReport)
        << what << ": the exactly tracked part is " << exact_over << "x the pages written";
}

inline std::string writerPath() { return test::buildDir() + "/ooh-dirty-writer"; }

} // namespace ooh

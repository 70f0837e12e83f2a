// SPDX-License-Identifier: Apache-2.0
// oohctl checkpoint's convergence policy: when pre-dumping stops, and that
// "converged" is said only when the dirty set converged.
#include "convergence.h"

#include <gtest/gtest.h>
#include <ostream>
#include <vector>

namespace ooh {

// Readable failures: gtest prints what it cannot name as bytes.
void PrintTo(ConvergenceVerdict v, std::ostream *os)
{
    static const char *const names[] = {"Continue", "Converged", "RoundLimit"};
    *os << names[static_cast<int>(v)];
}

void PrintTo(ConvergenceReason r, std::ostream *os)
{
    static const char *const names[] = {"NoRoundYet",     "FirstRound",       "StillShrinking",
                                        "UnderThreshold", "StoppedShrinking", "RoundLimit"};
    *os << names[static_cast<int>(r)];
}

namespace {

ConvergencePolicy policy(uint64_t threshold = 256, unsigned minShrinkPct = 10,
                         unsigned maxRounds = 8)
{
    return {threshold, minShrinkPct, maxRounds};
}

ConvergenceDecision decide(std::vector<uint64_t> pages, const ConvergencePolicy &p = policy())
{
    return decideConvergence(pages, p);
}

// Runs the loop of oohctl checkpoint over a sequence of rounds; returns the
// decision that stopped it (the sequence must be long enough).
ConvergenceDecision runRounds(const std::vector<uint64_t> &rounds, const ConvergencePolicy &p)
{
    std::vector<uint64_t> done;
    for (uint64_t pages : rounds) {
        done.push_back(pages);
        ConvergenceDecision d = decideConvergence(done, p);
        if (d.verdict != ConvergenceVerdict::Continue)
            return d;
    }
    ADD_FAILURE() << "still pre-dumping after " << rounds.size() << " rounds";
    return decideConvergence(done, p);
}

TEST(Convergence, NothingToDecideBeforeTheFirstRound)
{
    auto d = decide({});
    EXPECT_EQ(d.verdict, ConvergenceVerdict::Continue);
    EXPECT_EQ(d.reason, ConvergenceReason::NoRoundYet);
}

// The first pre-dump saves every page: however few, it is no dirty rate.
TEST(Convergence, FirstRoundNeverConverges)
{
    auto d = decide({10});
    EXPECT_EQ(d.verdict, ConvergenceVerdict::Continue);
    EXPECT_EQ(d.reason, ConvergenceReason::FirstRound);
    EXPECT_EQ(d.rounds, 1u);
}

TEST(Convergence, UnderThresholdConverges)
{
    auto p = policy();
    auto d = decide({100000, 256}, p);
    EXPECT_EQ(d.verdict, ConvergenceVerdict::Converged);
    EXPECT_EQ(d.reason, ConvergenceReason::UnderThreshold);
    EXPECT_EQ(
        convergenceMessage(d, p),
        "converged after 2 pre-dumps (round 2 wrote 256 pages, at most the threshold of 256)");

    // One page over the threshold, but still shrinking fast: go on.
    d = decide({100000, 257}, p);
    EXPECT_EQ(d.verdict, ConvergenceVerdict::Continue);
    EXPECT_EQ(d.reason, ConvergenceReason::StillShrinking);
}

TEST(Convergence, StoppedShrinkingConverges)
{
    auto p = policy(256, 10);
    // 4500 is exactly 10% fewer than 5000: still shrinking enough.
    EXPECT_EQ(decide({100000, 5000, 4500}, p).verdict, ConvergenceVerdict::Continue);
    auto d = decide({100000, 5000, 4501}, p);
    EXPECT_EQ(d.verdict, ConvergenceVerdict::Converged);
    EXPECT_EQ(d.reason, ConvergenceReason::StoppedShrinking);
    EXPECT_EQ(convergenceMessage(d, p),
              "converged after 3 pre-dumps (round 3 wrote 4501 pages, 9% fewer than round 2's "
              "5000, not 10% fewer: the dirty set stopped shrinking)");
}

TEST(Convergence, GrowingDirtySetStops)
{
    auto d = decide({100000, 5000, 6000});
    EXPECT_EQ(d.verdict, ConvergenceVerdict::Converged);
    EXPECT_EQ(d.reason, ConvergenceReason::StoppedShrinking);
    EXPECT_NE(d.detail.find("20% more than round 2's 5000"), std::string::npos) << d.detail;

    // From nothing to something: no percentage, no division by zero.
    d = decide({0, 300});
    EXPECT_EQ(d.reason, ConvergenceReason::StoppedShrinking);
    EXPECT_NE(d.detail.find("more than round 1's 0"), std::string::npos) << d.detail;
}

// --min-shrink 0: any growth stops, an equal round does not.
TEST(Convergence, ZeroMinShrinkStopsOnlyOnGrowth)
{
    auto p = policy(0, 0);
    EXPECT_EQ(decide({1000, 1000}, p).verdict, ConvergenceVerdict::Continue);
    EXPECT_EQ(decide({1000, 1001}, p).reason, ConvergenceReason::StoppedShrinking);
}

// The bug this policy was split out for: hitting the round limit printed
// "converged after N pre-dumps (round limit)".
TEST(Convergence, RoundLimitIsNotConvergence)
{
    auto p = policy(256, 10, 3);
    auto d = decide({100000, 50000, 20000}, p);
    EXPECT_EQ(d.verdict, ConvergenceVerdict::RoundLimit);
    EXPECT_EQ(d.reason, ConvergenceReason::RoundLimit);
    std::string msg = convergenceMessage(d, p);
    EXPECT_EQ(msg, "round limit hit after 3 pre-dumps (--max-rounds 3): round 3 wrote 20000 "
                   "pages, still 60% fewer than round 2's 50000 and above the threshold of 256");
    EXPECT_EQ(msg.find("converged"), std::string::npos) << msg;
}

TEST(Convergence, RoundLimitOfOne)
{
    auto p = policy(256, 10, 1);
    auto d = decide({10}, p);
    EXPECT_EQ(d.verdict, ConvergenceVerdict::RoundLimit);
    EXPECT_EQ(convergenceMessage(d, p),
              "round limit hit after 1 pre-dump (--max-rounds 1): round 1 is the full pre-dump "
              "(10 pages)");
}

// Converging in the last allowed round is converging.
TEST(Convergence, ConvergedAtTheLimitIsConverged)
{
    auto p = policy(256, 10, 2);
    EXPECT_EQ(decide({100000, 100}, p).verdict, ConvergenceVerdict::Converged);
    EXPECT_EQ(decide({100000, 99000}, p).verdict, ConvergenceVerdict::Converged);
    EXPECT_EQ(decide({100000, 50000}, p).verdict, ConvergenceVerdict::RoundLimit);
}

TEST(Convergence, LoopStopsWhereThePolicySays)
{
    auto p = policy(256, 10, 8);
    // Halving each round: under 256 at round 10, past the limit of 8.
    auto d = runRounds({100000, 50000, 25000, 12500, 6250, 3125, 1562, 781, 390, 195}, p);
    EXPECT_EQ(d.verdict, ConvergenceVerdict::RoundLimit);
    EXPECT_EQ(d.rounds, 8u);

    d = runRounds({100000, 3000, 1000, 200}, p);
    EXPECT_EQ(d.verdict, ConvergenceVerdict::Converged);
    EXPECT_EQ(d.reason, ConvergenceReason::UnderThreshold);
    EXPECT_EQ(d.rounds, 4u);

    d = runRounds({100000, 3000, 2900}, p);
    EXPECT_EQ(d.reason, ConvergenceReason::StoppedShrinking);
    EXPECT_EQ(d.rounds, 3u);
}

// Page counts of a huge tree do not overflow the percentage arithmetic.
TEST(Convergence, HugeCounts)
{
    uint64_t big = uint64_t(1) << 52;
    EXPECT_EQ(decide({big, big - 1}).reason, ConvergenceReason::StoppedShrinking);
    EXPECT_EQ(decide({big, big / 2}).reason, ConvergenceReason::StillShrinking);
}

} // namespace
} // namespace ooh

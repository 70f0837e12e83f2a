// SPDX-License-Identifier: Apache-2.0
// The convergence policy of `oohctl checkpoint` (convergence.h).
#include "convergence.h"

#include <algorithm>

namespace ooh {

namespace {

std::string pages(uint64_t n) { return std::to_string(n) + (n == 1 ? " page" : " pages"); }

// "12% fewer than round 2's 1000", "20% more than ...", "as many as ...".
std::string comparedTo(uint64_t last, uint64_t prev, size_t prevRound)
{
    std::string than = "round " + std::to_string(prevRound) + "'s " + std::to_string(prev);
    if (last == prev)
        return "as many as " + than;
    if (last > prev) {
        if (prev == 0)
            return "more than " + than;
        return std::to_string((last - prev) * 100 / prev) + "% more than " + than;
    }
    return std::to_string((prev - last) * 100 / prev) + "% fewer than " + than;
}

} // namespace

ConvergenceDecision decideConvergence(std::span<const uint64_t> pagesPerRound,
                                      const ConvergencePolicy &policy)
{
    size_t round = pagesPerRound.size();
    if (round == 0)
        return {ConvergenceVerdict::Continue, ConvergenceReason::NoRoundYet, 0, "no pre-dump yet"};

    uint64_t last = pagesPerRound[round - 1];
    std::string wrote = "round " + std::to_string(round) + " wrote " + pages(last);
    bool atLimit = round >= policy.maxRounds;
    // The first pre-dump has no parent: it saves every page, which says
    // nothing about how fast the tree dirties them.
    if (round == 1) {
        std::string detail = "round 1 is the full pre-dump (" + pages(last) + ")";
        if (atLimit)
            return {ConvergenceVerdict::RoundLimit, ConvergenceReason::RoundLimit, round, detail};
        return {ConvergenceVerdict::Continue, ConvergenceReason::FirstRound, round, detail};
    }

    uint64_t prev = pagesPerRound[round - 2];
    std::string change = comparedTo(last, prev, round - 1);
    if (last <= policy.thresholdPages)
        return {ConvergenceVerdict::Converged, ConvergenceReason::UnderThreshold, round,
                wrote + ", at most the threshold of " + std::to_string(policy.thresholdPages)};
    // last > prev * (1 - minShrinkPct / 100), in integers.
    if (last * 100 > prev * (100 - uint64_t(std::min(policy.minShrinkPct, 100u))))
        return {ConvergenceVerdict::Converged, ConvergenceReason::StoppedShrinking, round,
                wrote + ", " + change + ", not " + std::to_string(policy.minShrinkPct) +
                    "% fewer: the dirty set stopped shrinking"};
    std::string detail = wrote + ", still " + change + " and above the threshold of " +
                         std::to_string(policy.thresholdPages);
    if (atLimit)
        return {ConvergenceVerdict::RoundLimit, ConvergenceReason::RoundLimit, round, detail};
    return {ConvergenceVerdict::Continue, ConvergenceReason::StillShrinking, round, detail};
}

std::string convergenceMessage(const ConvergenceDecision &decision, const ConvergencePolicy &policy)
{
    size_t rounds = decision.rounds;
    std::string n = std::to_string(rounds) + (rounds == 1 ? " pre-dump" : " pre-dumps");
    switch (decision.verdict) {
    case ConvergenceVerdict::Converged:
        return "converged after " + n + " (" + decision.detail + ")";
    case ConvergenceVerdict::RoundLimit:
        return "round limit hit after " + n + " (--max-rounds " + std::to_string(policy.maxRounds) +
               "): " + decision.detail;
    case ConvergenceVerdict::Continue: break;
    }
    return "pre-dumping on after " + n + " (" + decision.detail + ")";
}

} // namespace ooh

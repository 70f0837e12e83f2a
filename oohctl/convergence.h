// SPDX-License-Identifier: Apache-2.0
// When `oohctl checkpoint` stops pre-dumping: a pure function of the pages
// each round wrote, so the policy is tested without CRIU or a target.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace ooh {

struct ConvergencePolicy {
    // Converged once a round (after the first) writes at most this many pages.
    uint64_t thresholdPages = 256;
    // Converged once a round writes not at least this many percent fewer
    // pages than the round before: more rounds would not shrink the final dump.
    unsigned minShrinkPct = 10;
    // Never more pre-dumps than this; reaching it is not converging.
    unsigned maxRounds = 8;
};

enum class ConvergenceVerdict {
    Continue,   // pre-dump once more
    Converged,  // the dirty set is as small as pre-dumping makes it
    RoundLimit, // gave up at maxRounds; the dirty set had not converged
};

enum class ConvergenceReason {
    NoRoundYet,
    FirstRound,       // the first pre-dump saves every page: no dirty rate yet
    StillShrinking,   // Continue
    UnderThreshold,   // Converged
    StoppedShrinking, // Converged
    RoundLimit,       // RoundLimit
};

struct ConvergenceDecision {
    ConvergenceVerdict verdict;
    ConvergenceReason reason;
    size_t rounds; // pre-dumps so far
    // The last round in words, with its numbers: "round 3 wrote 120 pages, at
    // most the threshold of 256".
    std::string detail;
};

// pagesPerRound[i] is what pre-dump i + 1 wrote; the decision is about
// the last one. Under the threshold wins over the round limit.
ConvergenceDecision decideConvergence(std::span<const uint64_t> pagesPerRound,
                                      const ConvergencePolicy &policy);

// The line oohctl prints when the pre-dumps stop: "converged after N
// pre-dumps (...)" only for a Converged decision, "round limit ..." for a
// RoundLimit one.
std::string convergenceMessage(const ConvergenceDecision &decision,
                               const ConvergencePolicy &policy);

} // namespace ooh

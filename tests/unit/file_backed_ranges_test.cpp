// SPDX-License-Identifier: Apache-2.0
// FileBackedRanges: which parts of an address space the uffd-wp scans treat
// as possibly holding file pages.
#include "uffd_wp_scan.h"

#include <gtest/gtest.h>

namespace ooh {

void PrintTo(const FileBackedRanges::Run &r, std::ostream *os)
{
    *os << "[" << std::hex << r.start << "," << r.end << ")" << (r.file_backed ? "file" : "anon");
}

namespace {

using Runs = std::vector<FileBackedRanges::Run>;

TEST(FileBackedRanges, NothingKnownIsFileBacked)
{
    FileBackedRanges f;
    EXPECT_EQ(f.runs(0x1000, 0x9000), (Runs{{0x1000, 0x9000, true}}));
}

TEST(FileBackedRanges, AdjacentRunsOfOneKindMerge)
{
    FileBackedRanges f;
    f.set(0x1000, 0x3000, false);
    f.set(0x3000, 0x5000, false);
    f.set(0x5000, 0x6000, true);
    EXPECT_EQ(f.runs(0x1000, 0x6000), (Runs{{0x1000, 0x5000, false}, {0x5000, 0x6000, true}}));
}

TEST(FileBackedRanges, GapsJoinTheRunBefore)
{
    FileBackedRanges f;
    f.set(0x2000, 0x3000, false);
    f.set(0x8000, 0x9000, true);
    // Leading unknown part: file-backed; the gap after the anon run: anon.
    EXPECT_EQ(f.runs(0x0, 0xa000),
              (Runs{{0x0, 0x2000, true}, {0x2000, 0x8000, false}, {0x8000, 0xa000, true}}));
}

TEST(FileBackedRanges, SetReplacesWhatItOverlaps)
{
    FileBackedRanges f;
    f.set(0x1000, 0x9000, true);
    f.set(0x3000, 0x5000, false); // an anonymous mapping over the middle
    EXPECT_EQ(f.runs(0x1000, 0x9000),
              (Runs{{0x1000, 0x3000, true}, {0x3000, 0x5000, false}, {0x5000, 0x9000, true}}));
    f.set(0x2000, 0x6000, true); // and a file mapping over that
    EXPECT_EQ(f.runs(0x1000, 0x9000), (Runs{{0x1000, 0x9000, true}}));
}

TEST(FileBackedRanges, RunsAreClippedToTheQuery)
{
    FileBackedRanges f;
    f.set(0x1000, 0x4000, false);
    f.set(0x4000, 0x8000, true);
    EXPECT_EQ(f.runs(0x2000, 0x5000), (Runs{{0x2000, 0x4000, false}, {0x4000, 0x5000, true}}));
}

} // namespace
} // namespace ooh

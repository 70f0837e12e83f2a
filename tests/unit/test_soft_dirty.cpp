// SPDX-License-Identifier: Apache-2.0
// The soft-dirty backend: pagemap decoding, new mappings, discarded pages,
// and its probe on this kernel (which may lack CONFIG_MEM_SOFT_DIRTY).
#include "soft_dirty.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

namespace ooh {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t SD = soft_dirty::kPagemapSoftDirty;

TEST(SoftDirty, DecodesBit55IntoRanges)
{
    uint64_t entries[] = {SD | 1ull << 63, SD, 0, 1ull << 63, SD, SD};
    std::vector<PageRange> out;
    soft_dirty::appendDirtyRanges(0x10000, entries, kPage, out);
    std::vector<PageRange> want = {{0x10000, 0x12000, false}, {0x14000, 0x16000, false}};
    EXPECT_EQ(out, want);
}

TEST(SoftDirty, VanishedPages)
{
    std::vector<PageRange> out;
    soft_dirty::appendVanishedPages({0x1000, 0x2000, 0x3000, 0x9000}, {0x2000, 0x5000}, kPage, out);
    std::vector<PageRange> want = {
        {0x1000, 0x2000, false}, {0x3000, 0x4000, false}, {0x9000, 0xa000, false}};
    EXPECT_EQ(out, want);
}

MapEntry vma(uint64_t s, uint64_t e, uint64_t off = 0, const char *path = "")
{
    MapEntry m;
    m.start = s;
    m.end = e;
    m.offset = off;
    m.path = path;
    return m;
}

TEST(SoftDirty, NewMovedAndGrownMappingsAreWhole)
{
    std::vector<MapEntry> before = {vma(0x1000, 0x5000), vma(0x10000, 0x20000),
                                    vma(0x30000, 0x31000, 0, "[vdso]")};
    std::vector<MapEntry> now = {vma(0x1000, 0x5000), vma(0x10000, 0x28000), vma(0x40000, 0x42000),
                                 vma(0x50000, 0x51000, 0, "[vdso]")};
    auto out = soft_dirty::newMappingRanges(before, now);
    // Of the grown mapping, what it grew by: its old part keeps its entries.
    std::vector<PageRange> want = {{0x20000, 0x28000, true}, {0x40000, 0x42000, true}};
    EXPECT_EQ(out, want);
}

TEST(SoftDirty, SplitMergedAndReplacedMappings)
{
    auto file = [](uint64_t s, uint64_t e, uint64_t off, uint64_t inode) {
        MapEntry m = vma(s, e, off);
        m.inode = inode;
        return m;
    };
    // An anonymous mapping split in two (mprotect), two merged into one, a
    // file mapping split at its offsets: nothing new.
    std::vector<MapEntry> before = {vma(0x1000, 0x5000), vma(0x10000, 0x12000),
                                    vma(0x12000, 0x14000), file(0x20000, 0x24000, 0x3000, 7)};
    std::vector<MapEntry> now = {vma(0x1000, 0x3000), vma(0x3000, 0x5000), vma(0x10000, 0x14000),
                                 file(0x20000, 0x22000, 0x3000, 7),
                                 file(0x22000, 0x24000, 0x5000, 7)};
    EXPECT_TRUE(soft_dirty::newMappingRanges(before, now).empty());
    // The same file at another offset, another file, anonymous memory over
    // a file: whole.
    now = {vma(0x1000, 0x5000), vma(0x10000, 0x14000), file(0x20000, 0x21000, 0x4000, 7),
           file(0x21000, 0x22000, 0x4000, 8), vma(0x22000, 0x24000)};
    std::vector<PageRange> want = {
        {0x20000, 0x21000, true}, {0x21000, 0x22000, true}, {0x22000, 0x24000, true}};
    EXPECT_EQ(soft_dirty::newMappingRanges(before, now), want);
}

TEST(SoftDirty, ProbeSaysWhyOrTracksAChild)
{
    SoftDirtyBackend backend;
    BackendProbe probe = backend.probe();
    if (!probe.available) {
        // This project's build machines lack CONFIG_MEM_SOFT_DIRTY: the
        // probe must say so, not fail later.
        EXPECT_NE(probe.reason.find("CONFIG_MEM_SOFT_DIRTY"), std::string::npos) << probe.reason;
        auto self = Target::open(getpid());
        ASSERT_TRUE(self.ok());
        auto t = backend.track(*self);
        EXPECT_FALSE(t.ok());
        return;
    }
    // Where the kernel has soft-dirty (and we may ptrace our child), a
    // written page is reported.
    int to_child[2], from_child[2];
    ASSERT_EQ(pipe(to_child), 0);
    ASSERT_EQ(pipe(from_child), 0);
    static char buffer[64 * 4096] __attribute__((aligned(4096)));
    pid_t child = fork();
    if (child == 0) {
        char c;
        while (read(to_child[0], &c, 1) == 1) {
            buffer[5 * 4096] = c;
            if (write(from_child[1], &c, 1) != 1)
                _exit(1);
        }
        _exit(0);
    }
    auto proc = Target::open(child);
    ASSERT_TRUE(proc.ok());
    auto tracker = backend.track(*proc);
    if (!tracker.ok()) {
        kill(child, SIGKILL);
        waitpid(child, nullptr, 0);
        GTEST_SKIP() << "cannot track a child here: " << tracker.error().message;
    }
    char c = 'x';
    ASSERT_EQ(write(to_child[1], &c, 1), 1);
    ASSERT_EQ(read(from_child[0], &c, 1), 1);
    std::vector<PageRange> got;
    ASSERT_TRUE((*tracker)->collect(got).ok());
    uint64_t page = reinterpret_cast<uintptr_t>(&buffer[5 * 4096]);
    bool found = false;
    for (auto &r : got)
        found |= page >= r.start && page < r.end;
    EXPECT_TRUE(found);
    close(to_child[1]);
    waitpid(child, nullptr, 0);
}

} // namespace
} // namespace ooh

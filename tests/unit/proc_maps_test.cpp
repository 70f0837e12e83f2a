// SPDX-License-Identifier: Apache-2.0
// /proc/PID/maps parsing, and vmasIn() (PROCMAP_QUERY or parsing) against
// this process's own mappings.
#include "proc_maps.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

namespace ooh {
namespace {

TEST(ProcMaps, ParsesLines)
{
    MapEntry e;
    ASSERT_TRUE(parseMapsLine("7f00a000-7f00c000 rw-s 00001000 fd:01 123456   /dev/shm/x y", &e));
    EXPECT_EQ(e.start, 0x7f00a000u);
    EXPECT_EQ(e.end, 0x7f00c000u);
    EXPECT_TRUE(e.read && e.write && !e.exec && e.shared);
    EXPECT_EQ(e.offset, 0x1000u);
    EXPECT_EQ(e.inode, 123456u);
    EXPECT_EQ(e.path, "/dev/shm/x y");
    ASSERT_TRUE(
        parseMapsLine("7ffc0000-7ffc2000 r-xp 00000000 00:00 0                  [vdso]", &e));
    EXPECT_EQ(e.path, "[vdso]");
    ASSERT_TRUE(parseMapsLine("10000-20000 ---p 00000000 00:00 0", &e));
    EXPECT_TRUE(e.path.empty());
    EXPECT_FALSE(parseMapsLine("garbage", &e));
    EXPECT_FALSE(parseMapsLine("20000-10000 rw-p 0 00:00 0", &e));
}

TEST(ProcMaps, VmasInFindsOurMapping)
{
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    void *p = mmap(nullptr, 8 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(p, MAP_FAILED);
    // Split it into two VMAs with different protections.
    ASSERT_EQ(mprotect(static_cast<char *>(p) + 4 * page, 4 * page, PROT_READ), 0);
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    auto base = reinterpret_cast<uint64_t>(p);
    auto vmas = vmasIn(fd, base + page, base + 6 * page);
    ASSERT_TRUE(vmas) << vmas.error().message;
    ASSERT_EQ(vmas->size(), 2u);
    EXPECT_EQ((*vmas)[0].start, base + page); // clipped
    EXPECT_EQ((*vmas)[0].end, base + 4 * page);
    EXPECT_TRUE((*vmas)[0].write);
    EXPECT_EQ((*vmas)[1].start, base + 4 * page);
    EXPECT_EQ((*vmas)[1].end, base + 6 * page);
    EXPECT_FALSE((*vmas)[1].write);
    close(fd);
    munmap(p, 8 * page);
}

} // namespace
TEST(ProcMaps, SharedMappingsAreReportedWhole)
{
    std::vector<MapEntry> maps(4);
    ASSERT_TRUE(parseMapsLine("7f0000000000-7f0000004000 rw-s 00000000 00:01 46 /memfd:x (deleted)",
                              &maps[0]));
    ASSERT_TRUE(parseMapsLine("7f0000004000-7f0000008000 rw-p 00000000 00:00 0", &maps[1]));
    ASSERT_TRUE(
        parseMapsLine("7f0000008000-7f000000a000 r--s 00000000 fe:00 12 /var/db", &maps[2]));
    ASSERT_TRUE(parseMapsLine("7ffff7fc1000-7ffff7fc5000 r--p 00000000 00:00 0 [vvar]", &maps[3]));
    std::vector<PageRange> out;
    appendSharedMappings(maps, out);
    std::vector<PageRange> want{{0x7f0000000000, 0x7f0000004000, true},
                                {0x7f0000008000, 0x7f000000a000, true}};
    EXPECT_EQ(out, want);
}

} // namespace ooh

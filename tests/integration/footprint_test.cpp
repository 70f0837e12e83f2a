// SPDX-License-Identifier: Apache-2.0
// Tracking must not change what a checkpointer sees: after track and
// collects, an unpopulated page is still a hole in /proc/PID/pagemap (not a
// "swapped" uffd-wp marker), a PROT_NONE reservation stays empty, no page
// tables appear for untouched ranges, and the collected set holds exactly
// the pages written (not the holes around them).
#include "backend.h"
#include "ground_truth.h"

#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sys/mman.h>
#include <sys/wait.h>

namespace ooh {
namespace {

constexpr uint64_t kPresent = 1ULL << 63;
constexpr uint64_t kSwapped = 1ULL << 62;

struct Layout {
    uint64_t reservation;  // 64 MiB PROT_NONE (glibc arenas look like this)
    uint64_t sparse;       // 32 MiB read-write, pages 0 and 4096 touched
    uint64_t file_private; // 1 MiB MAP_PRIVATE memfd, page 0 read, page 1 written
};
constexpr uint64_t kReservationBytes = 64ULL << 20;
constexpr uint64_t kSparseBytes = 32ULL << 20;
constexpr uint64_t kFileBytes = 1ULL << 20;

// The target: lays out its memory, reports it, then writes on command.
[[noreturn]] void runTarget(int cmd_fd, int ack_fd)
{
    auto *reservation = static_cast<char *>(
        ::mmap(nullptr, kReservationBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    auto *sparse = static_cast<char *>(
        ::mmap(nullptr, kSparseBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    int memfd = ::memfd_create("ooh-footprint", MFD_CLOEXEC);
    if (reservation == MAP_FAILED || sparse == MAP_FAILED || memfd < 0 ||
        ::ftruncate(memfd, kFileBytes) < 0)
        ::_exit(2);
    auto *file = static_cast<char *>(
        ::mmap(nullptr, kFileBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE, memfd, 0));
    if (file == MAP_FAILED)
        ::_exit(2);
    sparse[0] = 1;
    sparse[4096 * kPage] = 1;
    static_cast<volatile char *>(file)[0];
    file[kPage] = 1;
    Layout l{reinterpret_cast<uint64_t>(reservation), reinterpret_cast<uint64_t>(sparse),
             reinterpret_cast<uint64_t>(file)};
    if (::write(ack_fd, &l, sizeof(l)) != sizeof(l))
        ::_exit(2);
    char cmd;
    while (::read(cmd_fd, &cmd, 1) == 1 && cmd == 'w') {
        sparse[kPage] = 2;   // next to a touched page: same page table
        file[2 * kPage] = 2; // copy-on-write of a file page
        if (::write(ack_fd, &cmd, 1) != 1)
            ::_exit(2);
    }
    ::_exit(0);
}

struct Footprint {
    uint64_t present = 0;
    uint64_t swapped = 0;
};

Footprint pagemapFootprint(pid_t pid, uint64_t start, uint64_t bytes)
{
    Footprint f;
    UniqueFD pm(
        ::open(("/proc/" + std::to_string(pid) + "/pagemap").c_str(), O_RDONLY | O_CLOEXEC));
    std::vector<uint64_t> entries(bytes / kPage);
    ssize_t want = static_cast<ssize_t>(entries.size() * 8);
    EXPECT_EQ(::pread(pm.get(), entries.data(), static_cast<size_t>(want),
                      static_cast<off_t>(start / kPage * 8)),
              want)
        << "read pagemap of " << pid << ": " << std::strerror(errno);
    for (uint64_t e : entries) {
        f.present += (e & kPresent) != 0;
        f.swapped += (e & kSwapped) != 0;
    }
    return f;
}

uint64_t statusKb(pid_t pid, const std::string &field)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(field + ":", 0) == 0)
            return std::stoull(line.substr(field.size() + 1));
    ADD_FAILURE() << field << " not in /proc/" << pid << "/status";
    return 0;
}

std::vector<PageRange> clip(const std::vector<PageRange> &ranges, uint64_t start, uint64_t end)
{
    std::vector<PageRange> out;
    for (const auto &r : ranges)
        if (r.end > start && r.start < end)
            out.push_back({std::max(r.start, start), std::min(r.end, end), r.wholesale});
    return out;
}

TEST(TrackingFootprint, UnpopulatedPagesStayHoles)
{
    std::unique_ptr<Backend> uffd;
    for (auto &b : makeBackends())
        if (b->name() == "uffd-wp")
            uffd = std::move(b);
    ASSERT_TRUE(uffd);
    auto probe = uffd->probe();
    if (!probe.available)
        GTEST_SKIP() << "uffd-wp unavailable: " << probe.reason;

    int cmd[2], ack[2];
    ASSERT_EQ(::pipe2(cmd, O_CLOEXEC), 0);
    ASSERT_EQ(::pipe2(ack, O_CLOEXEC), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        ::close(cmd[1]);
        ::close(ack[0]);
        runTarget(cmd[0], ack[1]);
    }
    ::close(cmd[0]);
    ::close(ack[1]);
    Layout l{};
    ASSERT_EQ(::read(ack[0], &l, sizeof(l)), static_cast<ssize_t>(sizeof(l)));

    auto reservation0 = pagemapFootprint(pid, l.reservation, kReservationBytes);
    auto sparse0 = pagemapFootprint(pid, l.sparse, kSparseBytes);
    auto file0 = pagemapFootprint(pid, l.file_private, kFileBytes);
    uint64_t pte_kb0 = statusKb(pid, "VmPTE");

    auto proc = Target::open(pid);
    ASSERT_TRUE(proc) << proc.error().message;
    auto tracker = uffd->track(*proc);
    ASSERT_TRUE(tracker) << tracker.error().message;
    std::vector<PageRange> first;
    ASSERT_TRUE((*tracker)->collect(first));
    char c = 'w';
    ASSERT_EQ(::write(cmd[1], &c, 1), 1);
    ASSERT_EQ(::read(ack[0], &c, 1), 1);
    std::vector<PageRange> raw;
    auto collected = (*tracker)->collect(raw);
    ASSERT_TRUE(collected) << collected.error().message;
    auto second = normalizeRanges(std::move(raw));

    // Exactly the written pages, not the holes next to them.
    std::vector<PageRange> want_sparse{{l.sparse + kPage, l.sparse + 2 * kPage, false}};
    std::vector<PageRange> want_file{
        {l.file_private + 2 * kPage, l.file_private + 3 * kPage, false}};
    EXPECT_EQ(clip(second, l.sparse, l.sparse + kSparseBytes), want_sparse);
    EXPECT_EQ(clip(second, l.file_private, l.file_private + kFileBytes), want_file);
    EXPECT_TRUE(clip(second, l.reservation, l.reservation + kReservationBytes).empty());

    auto reservation1 = pagemapFootprint(pid, l.reservation, kReservationBytes);
    auto sparse1 = pagemapFootprint(pid, l.sparse, kSparseBytes);
    auto file1 = pagemapFootprint(pid, l.file_private, kFileBytes);
    uint64_t pte_kb1 = statusKb(pid, "VmPTE");
    // A uffd-wp marker reads as a swapped page: CRIU would dump (and fault
    // in) every one of them.
    EXPECT_EQ(reservation1.swapped, 0u) << "markers in the PROT_NONE reservation";
    EXPECT_EQ(reservation1.present, reservation0.present);
    EXPECT_EQ(sparse1.swapped, sparse0.swapped) << "markers in the untouched read-write range";
    EXPECT_EQ(sparse1.present, sparse0.present + 1);
    EXPECT_EQ(file1.swapped, file0.swapped) << "markers in the private file mapping";
    EXPECT_EQ(file1.present, file0.present + 1);
    // Arming 96 MiB with markers would take 48 page tables (192 KiB).
    EXPECT_LE(pte_kb1, pte_kb0 + 8) << "page tables allocated for untouched ranges";

    ::close(cmd[1]);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "target status " << status;
    ::close(ack[0]);
}

} // namespace
} // namespace ooh

int main(int argc, char **argv)
{
    return ooh::test::runRootTests(argc, argv, "the tracking footprint test");
}

// SPDX-License-Identifier: Apache-2.0
// Exact dirty pages, in the manner of the kernel's pagemap_ioctl.c selftest:
// a child writes chosen pages of its mappings between collects, and each
// collect must report exactly those pages of the mappings, none of them
// wholesale, and nothing once nothing was written. The ground truth bounds
// what is missed; this bounds what is added. Header-only: the integration
// tests and the VM's guest check (which links no test library) share it.
#pragma once

#include "page_range.h"
#include "result.h"

#include <algorithm>
#include <cinttypes>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <functional>
#include <string>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace ooh::test {

// A 2 MiB boundary: where x86_64's and arm64's 4 KiB-page kernels put huge
// pages; the small-page patterns write across one.
constexpr uint64_t k2MiB = 2ull << 20;

// The size of a transparent huge page here (a PMD: 2 MiB with 4 KiB pages,
// 32 MiB with arm64's 16 KiB, 512 MiB with 64 KiB).
inline uint64_t hugePageSize()
{
    static const uint64_t size = [] {
        std::ifstream f("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size");
        uint64_t v = 0;
        return f >> v && v ? v : k2MiB;
    }();
    return size;
}
// Pages of the small-page mappings: 4 MiB, so a 2 MiB boundary is inside.
constexpr uint64_t kSmallPages = 1024;

// A forked child that owns anonymous mappings and writes exactly the pages
// it is told to: no other write of its lands in them.
class PageToucher {
public:
    struct Mapping {
        std::string name;
        uint64_t start = 0;
        uint64_t end = 0;
        bool huge = false; // meant to be backed by transparent huge pages
    };

    PageToucher() = default;
    PageToucher(const PageToucher &) = delete;
    PageToucher &operator=(const PageToucher &) = delete;
    ~PageToucher()
    {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        if (cmd_ >= 0)
            ::close(cmd_);
        if (ans_ >= 0)
            ::close(ans_);
    }

    // Forks the child; false (errno set) on failure.
    bool start()
    {
        int a[2], b[2];
        if (::pipe(a) < 0 || ::pipe(b) < 0)
            return false;
        // Allocated before fork: the child never allocates.
        std::vector<uint64_t> buf(kMaxArgs);
        pid_ = ::fork();
        if (pid_ < 0)
            return false;
        if (pid_ == 0) {
            ::close(a[1]);
            ::close(b[0]);
            serve(a[0], b[1], buf.data());
        }
        ::close(a[0]);
        ::close(b[1]);
        cmd_ = a[1];
        ans_ = b[0];
        return true;
    }

    pid_t pid() const { return pid_; }
    const std::vector<Mapping> &mappings() const { return mappings_; }
    uint64_t pageSize() const { return page_; }

    // A private anonymous mapping of `pages` pages that stays in small
    // pages (MADV_NOHUGEPAGE), left unpopulated.
    bool map(const std::string &name, uint64_t pages)
    {
        uint64_t start = 0;
        if (!command('m', {pages}, &start) || !start)
            return false;
        mappings_.push_back({name, start, start + pages * page_, false});
        return true;
    }

    // A private mapping of `pages` pages of a file (a memfd) whose contents
    // are in the page cache: its pages are the file's until written.
    bool mapFilePrivate(const std::string &name, uint64_t pages)
    {
        uint64_t start = 0;
        if (!command('f', {pages}, &start) || !start)
            return false;
        mappings_.push_back({name, start, start + pages * page_, false});
        return true;
    }

    // Reads one byte of each page of [start, end): faults in what is not
    // mapped, writes nothing.
    bool read(uint64_t start, uint64_t end)
    {
        uint64_t done = 0;
        return command('r', {start, end}, &done) && done == 1;
    }

    // `count` huge pages, aligned to one, MADV_HUGEPAGE, every page written
    // (so that the kernel backs them with huge pages if it can; ask
    // hugeBytes() whether it did).
    bool mapHuge(const std::string &name, uint64_t count)
    {
        uint64_t start = 0;
        if (!command('h', {count}, &start) || !start)
            return false;
        mappings_.push_back({name, start, start + count * hugePageSize(), true});
        return true;
    }

    // Writes one byte in each of these pages (addresses), then returns.
    bool touch(const std::vector<uint64_t> &pages)
    {
        uint64_t done = 0;
        return command('w', pages, &done) && done == pages.size();
    }

    // Bytes of [start, end) mapped by huge pages now (AnonHugePages of the
    // child's smaps).
    uint64_t hugeBytes(uint64_t start, uint64_t end) const
    {
        std::ifstream smaps("/proc/" + std::to_string(pid_) + "/smaps");
        std::string line;
        bool inside = false;
        uint64_t bytes = 0;
        while (std::getline(smaps, line)) {
            unsigned long long s, e, kb;
            if (std::sscanf(line.c_str(), "%llx-%llx ", &s, &e) == 2 &&
                line.find(':') > line.find(' '))
                inside = s < end && e > start;
            else if (inside && std::sscanf(line.c_str(), "AnonHugePages: %llu kB", &kb) == 1)
                bytes += kb * 1024;
        }
        return bytes;
    }

private:
    static constexpr size_t kMaxArgs = 8192;

    // Moves n bytes with `io(done)` (a read or write of what is left),
    // across short counts and EINTR.
    template <typename Io> static bool whole(size_t n, Io io)
    {
        for (size_t done = 0; done < n;) {
            ssize_t r = io(done);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return false;
            done += static_cast<size_t>(r);
        }
        return true;
    }
    static bool readAll(int fd, void *p, size_t n)
    {
        return whole(
            n, [&](size_t done) { return ::read(fd, static_cast<char *>(p) + done, n - done); });
    }
    static bool writeAll(int fd, const void *p, size_t n)
    {
        return whole(n, [&](size_t done) {
            return ::write(fd, static_cast<const char *>(p) + done, n - done);
        });
    }

    bool command(char op, const std::vector<uint64_t> &args, uint64_t *answer)
    {
        uint64_t head[2] = {static_cast<uint64_t>(op), args.size()};
        return args.size() <= kMaxArgs && writeAll(cmd_, head, sizeof(head)) &&
               writeAll(cmd_, args.data(), args.size() * sizeof(uint64_t)) &&
               readAll(ans_, answer, sizeof(*answer));
    }

    // The child: system calls only, on memory allocated before the fork.
    [[noreturn]] static void serve(int in, int out, uint64_t *args)
    {
        const uint64_t ps = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
        uint64_t head[2];
        uint8_t generation = 0;
        while (readAll(in, head, sizeof(head)) && head[1] <= kMaxArgs &&
               readAll(in, args, head[1] * sizeof(uint64_t))) {
            uint64_t answer = 0;
            if (head[0] == 'w') {
                ++generation;
                for (uint64_t i = 0; i < head[1]; ++i)
                    *reinterpret_cast<volatile uint8_t *>(args[i] + 64) = generation | 1;
                answer = head[1];
            } else if (head[0] == 'm' && head[1] == 1) {
                void *p = ::mmap(nullptr, args[0] * ps, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (p != MAP_FAILED && ::madvise(p, args[0] * ps, MADV_NOHUGEPAGE) == 0)
                    answer = reinterpret_cast<uint64_t>(p);
            } else if (head[0] == 'f' && head[1] == 1) {
                int fd = ::memfd_create("exact-pages", MFD_CLOEXEC);
                bool filled = fd >= 0 && ::ftruncate(fd, static_cast<off_t>(args[0] * ps)) == 0;
                for (uint64_t p = 0; filled && p < args[0]; ++p)
                    filled = ::pwrite(fd, &p, sizeof(p), static_cast<off_t>(p * ps)) ==
                             static_cast<ssize_t>(sizeof(p));
                void *m = filled ? ::mmap(nullptr, args[0] * ps, PROT_READ | PROT_WRITE,
                                          MAP_PRIVATE, fd, 0)
                                 : MAP_FAILED;
                if (m != MAP_FAILED)
                    answer = reinterpret_cast<uint64_t>(m);
                if (fd >= 0)
                    ::close(fd);
            } else if (head[0] == 'r' && head[1] == 2) {
                uint64_t sum = 0;
                for (uint64_t a = args[0]; a < args[1]; a += ps)
                    sum += *reinterpret_cast<volatile uint8_t *>(a);
                answer = sum != ~0ull; // 1; the loads are not optimised away
            } else if (head[0] == 'h' && head[1] == 1) {
                // Over-map, then keep the huge-page-aligned middle.
                uint64_t len = args[0] * hugePageSize();
                void *p = ::mmap(nullptr, len + hugePageSize(), PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (p != MAP_FAILED) {
                    uint64_t raw = reinterpret_cast<uint64_t>(p);
                    uint64_t start = (raw + hugePageSize() - 1) & ~(hugePageSize() - 1);
                    if (start > raw)
                        ::munmap(p, start - raw);
                    if (raw + hugePageSize() > start)
                        ::munmap(reinterpret_cast<void *>(start + len),
                                 raw + hugePageSize() - start);
                    auto *mem = reinterpret_cast<volatile uint8_t *>(start);
                    if (::madvise(reinterpret_cast<void *>(start), len, MADV_HUGEPAGE) == 0) {
                        for (uint64_t off = 0; off < len; off += ps)
                            mem[off] = 1;
                        answer = start;
                    }
                }
            } else {
                break;
            }
            if (!writeAll(out, &answer, sizeof(answer)))
                break;
        }
        ::_exit(0);
    }

    pid_t pid_ = -1;
    int cmd_ = -1;
    int ans_ = -1;
    uint64_t page_ = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    std::vector<Mapping> mappings_;
};

// Pages (indices within a mapping) written between two collects.
struct PagePattern {
    std::string name;
    std::vector<uint64_t> pages;
};

// For a small-page mapping of `pages` pages (at least 1024) at `start`.
inline std::vector<PagePattern> smallPagePatterns(uint64_t start, uint64_t pages,
                                                  uint64_t page_size)
{
    // A 2 MiB boundary with four pages on either side inside the mapping.
    uint64_t boundary = (start + 4 * page_size + k2MiB - 1) & ~(k2MiB - 1);
    uint64_t b = (boundary - start) / page_size;
    std::vector<PagePattern> out = {
        {"one page", {pages / 3}},
        {"first and last page", {0, pages - 1}},
        {"every other page", {}},
        {"a run across a 2 MiB boundary", {}},
        {"the same page again (armed, not a hole)", {pages / 3}},
        {"every page", {}},
    };
    for (uint64_t p = 0; p < std::min<uint64_t>(pages, 512); p += 2)
        out[2].pages.push_back(p);
    for (uint64_t p = b - 4; p < b + 4; ++p)
        out[3].pages.push_back(p);
    for (uint64_t p = 0; p < pages; ++p)
        out[5].pages.push_back(p);
    return out;
}

// For a mapping of two (or more) populated huge pages.
inline std::vector<PagePattern> hugePagePatterns(uint64_t page_size)
{
    const uint64_t per_huge = hugePageSize() / page_size;
    std::vector<PagePattern> out = {
        {"one page of a huge page", {5}},
        {"the last page of a huge page and the first of the next", {per_huge - 1, per_huge}},
        {"every 64th page", {}},
        {"the same page again", {5}},
    };
    for (uint64_t p = 0; p < 2 * per_huge; p += 64)
        out[2].pages.push_back(p);
    return out;
}

// What a collect reported within mapping `m` against the pages written
// there (`want`, sorted addresses). Where the kernel tracks a huge page as
// one (soft-dirty: the PMD's bit), `huge_granule` is the huge page size and
// a written page stands for its whole huge page; otherwise the page size.
// Returns "" when the exact ranges hold exactly the pages wanted and no
// wholesale range touches the mapping, else what differs.
inline std::string compareWithin(const std::vector<PageRange> &got, const PageToucher::Mapping &m,
                                 std::vector<uint64_t> want, uint64_t page_size,
                                 uint64_t huge_granule)
{
    if (m.huge && huge_granule > page_size) {
        std::vector<uint64_t> widened;
        for (uint64_t a : want)
            for (uint64_t p = a & ~(huge_granule - 1); p < (a & ~(huge_granule - 1)) + huge_granule;
                 p += page_size)
                if (p >= m.start && p < m.end)
                    widened.push_back(p);
        want = std::move(widened);
    }
    std::sort(want.begin(), want.end());
    want.erase(std::unique(want.begin(), want.end()), want.end());
    std::vector<uint64_t> exact;
    uint64_t wholesale = 0, first_wholesale = 0;
    for (const PageRange &r : got) {
        uint64_t s = std::max(r.start, m.start), e = std::min(r.end, m.end);
        if (s >= e)
            continue;
        if (r.wholesale) {
            if (!wholesale)
                first_wholesale = s;
            wholesale += (e - s) / page_size;
            continue;
        }
        for (uint64_t p = s & ~(page_size - 1); p < e; p += page_size)
            exact.push_back(p);
    }
    std::vector<uint64_t> missing, extra;
    std::set_difference(want.begin(), want.end(), exact.begin(), exact.end(),
                        std::back_inserter(missing));
    std::set_difference(exact.begin(), exact.end(), want.begin(), want.end(),
                        std::back_inserter(extra));
    char buf[512];
    if (wholesale) {
        std::snprintf(buf, sizeof(buf),
                      "%" PRIu64 " pages of %s reported wholesale (first: page %" PRIu64
                      "); it is tracked, so only the %zu pages expected may be reported, exactly",
                      wholesale, m.name.c_str(), (first_wholesale - m.start) / page_size,
                      want.size());
        return buf;
    }
    if (missing.empty() && extra.empty())
        return "";
    int n = std::snprintf(buf, sizeof(buf),
                          "%s: %zu pages expected, %zu reported exactly: %zu missing, %zu extra",
                          m.name.c_str(), want.size(), exact.size(), missing.size(), extra.size());
    if (!missing.empty() && n > 0 && static_cast<size_t>(n) < sizeof(buf))
        n += std::snprintf(buf + n, sizeof(buf) - static_cast<size_t>(n),
                           " (first missing: page %" PRIu64 ")",
                           (missing.front() - m.start) / page_size);
    if (!extra.empty() && n > 0 && static_cast<size_t>(n) < sizeof(buf))
        std::snprintf(buf + n, sizeof(buf) - static_cast<size_t>(n),
                      " (first extra: page %" PRIu64 " at %#" PRIx64 ")",
                      (extra.front() - m.start) / page_size, extra.front());
    return buf;
}

// The resolution at which `backend` sees writes to a huge page: soft-dirty
// keeps one bit in the PMD of a huge page that is mapped whole, so a write
// dirties all of it (the kernel's own soft-dirty selftest expects that);
// uffd-wp splits a protected huge page on its first write, and PML logs
// 4 KiB pages.
inline uint64_t hugeGranule(const std::string &backend, uint64_t page_size)
{
    return backend == "soft-dirty" ? hugePageSize() : page_size;
}

// Why mapping `index` of `toucher` is not a test of huge pages, or "".
inline std::string hugePagesMissing(const PageToucher &toucher, size_t index)
{
    std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
    std::string mode;
    std::getline(f, mode);
    if (mode.empty())
        return "no transparent huge pages in this kernel";
    if (mode.find("[never]") != std::string::npos)
        return "transparent huge pages are disabled (" + mode + ")";
    const auto &m = toucher.mappings()[index];
    uint64_t huge = toucher.hugeBytes(m.start, m.end);
    if (huge < m.end - m.start)
        return "the kernel backed " + std::to_string(huge >> 10) + " of " +
               std::to_string((m.end - m.start) >> 10) +
               " KiB with huge pages (AnonHugePages; memory too fragmented?)";
    return "";
}

using ExactCollect = std::function<Result<std::vector<PageRange>>()>;

// For each pattern: write its pages of mapping `target`, collect, and
// expect exactly them in that mapping and nothing in the toucher's other
// mappings; collect again without writing and expect nothing anywhere.
// Returns "" or the first difference; appends what passed to *summary.
// read_first: read the whole mapping before writing the pattern (file
// pages read in are not written pages).
inline std::string runExactPatterns(PageToucher &toucher, size_t target,
                                    const std::vector<PagePattern> &patterns,
                                    const ExactCollect &collect, uint64_t huge_granule,
                                    std::string *summary, bool read_first = false)
{
    const uint64_t ps = toucher.pageSize();
    const auto &maps = toucher.mappings();
    const PageToucher::Mapping &m = maps[target];
    *summary += (summary->empty() ? "" : "; ") + m.name + ":";
    for (const PagePattern &pat : patterns) {
        std::vector<uint64_t> addrs;
        for (uint64_t p : pat.pages)
            addrs.push_back(m.start + p * ps);
        if (read_first && !toucher.read(m.start, m.end))
            return "the child did not read " + m.name;
        if (!toucher.touch(addrs))
            return "the child did not write the pages of '" + pat.name + "'";
        for (int quiet = 0; quiet < 2; ++quiet) {
            auto got = collect();
            if (!got)
                return "collect after '" + pat.name + "': " + got.error().message;
            auto ranges = normalizeRanges(std::move(*got));
            for (size_t i = 0; i < maps.size(); ++i) {
                std::vector<uint64_t> want;
                if (i == target && !quiet)
                    want = addrs;
                std::string diff = compareWithin(ranges, maps[i], want, ps, huge_granule);
                if (!diff.empty())
                    return std::string(quiet ? "the collect after " : "") + "'" + pat.name + "' (" +
                           std::to_string(pat.pages.size()) + " pages of " + m.name + " written" +
                           (quiet ? ", then none" : "") + "): " + diff;
            }
        }
        *summary += (&pat == &patterns.front() ? " " : ", ") + pat.name + " (" +
                    std::to_string(pat.pages.size()) + ")";
    }
    return "";
}

// Starts the toucher with its first mapping: kSmallPages small pages, or
// two huge pages. Returns "" or what failed; *skip is set when what failed
// is that the kernel gave no huge pages (not a failure of the tracker).
inline std::string startToucher(PageToucher &toucher, bool huge, bool *skip)
{
    *skip = false;
    if (!toucher.start())
        return std::string("fork: ") + std::strerror(errno);
    if (!huge)
        return toucher.map("the mapping", kSmallPages) ? "" : "the child could not map";
    if (!toucher.mapHuge("the huge pages", 2))
        return "the child could not map huge pages";
    std::string why = hugePagesMissing(toucher, 0);
    *skip = !why.empty();
    return why;
}

// The whole test, once the toucher's first mapping (`kSmallPages` small
// pages, or huge pages) is tracked and a first collect closed the epoch:
// the patterns on it, then, for small pages, on a mapping made while
// tracked (whatever its first collect says, it is exact from then on).

inline std::string runExactPages(PageToucher &toucher, const ExactCollect &collect,
                                 uint64_t huge_granule, std::string *summary)
{
    const uint64_t ps = toucher.pageSize();
    if (toucher.mappings()[0].huge)
        return runExactPatterns(toucher, 0, hugePagePatterns(ps), collect, huge_granule, summary);
    std::string diff = runExactPatterns(
        toucher, 0, smallPagePatterns(toucher.mappings()[0].start, kSmallPages, ps), collect,
        huge_granule, summary);
    if (!diff.empty())
        return diff;
    if (!toucher.map("a mapping made while tracked", kSmallPages))
        return "the child could not map a second time";
    if (auto first = collect(); !first)
        return "collect after the second mapping: " + first.error().message;
    diff = runExactPatterns(toucher, 1,
                            smallPagePatterns(toucher.mappings()[1].start, kSmallPages, ps),
                            collect, huge_granule, summary);
    if (!diff.empty())
        return diff;
    // A private file mapping, read whole before each write: the pages read
    // in are the file's, only those written (copied on write) count.
    if (!toucher.mapFilePrivate("a private file mapping", kSmallPages))
        return "the child could not map a file";
    if (auto first = collect(); !first)
        return "collect after the file mapping: " + first.error().message;
    return runExactPatterns(toucher, 2,
                            smallPagePatterns(toucher.mappings()[2].start, kSmallPages, ps),
                            collect, huge_granule, summary, true);
}

} // namespace ooh::test

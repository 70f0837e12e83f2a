// SPDX-License-Identifier: Apache-2.0
// ooh_self_collect() and the notice thread allocate nothing once tracking is
// set up (ooh/self.h): a collector collects with its other threads stopped,
// possibly inside malloc. This executable replaces malloc and friends with
// counting wrappers around glibc's, so that every allocation of libooh and
// libstdc++ is seen.
#include "ooh/self.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

extern "C" {
void *__libc_malloc(size_t);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *__libc_memalign(size_t, size_t);
void __libc_free(void *);
}

namespace {

std::atomic<bool> g_counting{false};
std::atomic<long> g_calls{0};

void count()
{
    if (g_counting.load(std::memory_order_relaxed))
        g_calls.fetch_add(1, std::memory_order_relaxed);
}

} // namespace

// free() counts too: it takes the arena's lock when the chunk does not go
// to the thread's cache.
extern "C" {
void *malloc(size_t n)
{
    count();
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t size)
{
    count();
    return __libc_calloc(n, size);
}
void *realloc(void *p, size_t n)
{
    count();
    return __libc_realloc(p, n);
}
void free(void *p)
{
    if (p)
        count();
    __libc_free(p);
}
void *memalign(size_t align, size_t n)
{
    count();
    return __libc_memalign(align, n);
}
void *aligned_alloc(size_t align, size_t n)
{
    count();
    return __libc_memalign(align, n);
}
int posix_memalign(void **out, size_t align, size_t n)
{
    count();
    void *p = __libc_memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}
}

namespace {

const uint64_t kPage = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));

// Filled without allocating: its storage is reserved before counting.
struct Seen {
    std::vector<ooh_range> ranges;
    static void sink(void *ctx, const ooh_range *r, size_t n)
    {
        auto *self = static_cast<Seen *>(ctx);
        for (size_t i = 0; i < n && self->ranges.size() < self->ranges.capacity(); ++i)
            self->ranges.push_back(r[i]);
    }
    bool covers(const void *p) const
    {
        auto a = reinterpret_cast<uint64_t>(p);
        for (const auto &r : ranges)
            if (a >= r.start && a < r.end)
                return true;
        return false;
    }
};

class SelfAllocation : public ::testing::Test {
protected:
    void SetUp() override
    {
        int r = ooh_self_open(&self_);
        if (r == -ENOTSUP || r == -EPERM)
            GTEST_SKIP() << "self-tracking unavailable here: " << ooh_self_last_error(self_);
        ASSERT_EQ(r, 0) << ooh_self_last_error(self_);
    }
    void TearDown() override
    {
        ooh_self_close(self_);
        for (auto [p, len] : maps_)
            ::munmap(p, len);
    }
    uint8_t *map(size_t pages, int flags = MAP_PRIVATE | MAP_ANONYMOUS, int fd = -1)
    {
        void *p = ::mmap(nullptr, pages * kPage, PROT_READ | PROT_WRITE, flags, fd, 0);
        EXPECT_NE(p, MAP_FAILED) << std::strerror(errno);
        ::madvise(p, pages * kPage, MADV_NOHUGEPAGE);
        maps_.push_back({p, pages * kPage});
        return static_cast<uint8_t *>(p);
    }
    void track(void *p, size_t pages)
    {
        ASSERT_EQ(ooh_self_track(self_, p, pages * kPage), 0) << ooh_self_last_error(self_);
    }

    ooh_self *self_ = nullptr;
    std::vector<std::pair<void *, size_t>> maps_;
};

TEST_F(SelfAllocation, CollectAndDiscardNoticesAllocateNothing)
{
    // Heap-like windows, one of them a private file mapping (the scan that
    // tells file pages apart), written sparsely enough to need several
    // batches, with discards past the fixed notice arrays.
    constexpr size_t kPages = 2048;
    uint8_t *a = map(kPages), *b = map(kPages);
    char path[] = "/tmp/ooh-self-alloc-XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    ::unlink(path);
    ASSERT_EQ(::ftruncate(fd, 64 * kPage), 0);
    uint8_t *f = map(64, MAP_PRIVATE, fd);
    ::close(fd);
    for (size_t p = 0; p < kPages; ++p)
        a[p * kPage] = b[p * kPage] = 1;
    for (size_t p = 0; p < 64; ++p)
        (void)*static_cast<volatile uint8_t *>(f + p * kPage);
    track(a, kPages);
    track(b, kPages);
    track(f, 64);
    Seen seen;
    seen.ranges.reserve(4 * kPages);
    ASSERT_GE(ooh_self_collect(self_, Seen::sink, &seen), 0) << ooh_self_last_error(self_);

    for (int round = 0; round < 3; ++round) {
        seen.ranges.clear();
        g_calls = 0;
        g_counting = true;
        for (size_t p = 0; p < kPages; p += 2)
            a[p * kPage] = 2; // 1024 separate ranges: four batches
        b[5 * kPage] = 2;
        f[3 * kPage] = 2;
        const size_t discards = round == 0 ? 8 : 100; // 100: past the fixed arrays
        for (size_t i = 0; i < discards; ++i)
            ::madvise(b + (100 + 2 * i) * kPage, kPage, MADV_DONTNEED);
        long pages = ooh_self_collect(self_, Seen::sink, &seen);
        g_counting = false;
        const long calls = g_calls;
        ASSERT_GE(pages, 0) << ooh_self_last_error(self_);
        EXPECT_EQ(calls, 0) << "allocations during discards and a collect, round " << round;
        for (size_t p = 0; p < kPages; p += 2)
            ASSERT_TRUE(seen.covers(a + p * kPage)) << "round " << round << " page " << p;
        EXPECT_TRUE(seen.covers(b + 5 * kPage));
        EXPECT_TRUE(seen.covers(f + 3 * kPage));
        for (size_t i = 0; i < discards; ++i)
            ASSERT_TRUE(seen.covers(b + (100 + 2 * i) * kPage)) << "discard " << i;
    }
}

} // namespace

// SPDX-License-Identifier: Apache-2.0
// Stamped pages, shared by the workloads that CRIU checkpoints: every write
// fills a whole page with a stamp of (word address, generation) and the
// workload keeps one generation per page, so that after a restore it can
// check every page of its memory against what it wrote, without a copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <sys/mman.h>
#include <vector>

namespace ooh::testprog {

// The unit of stamping; also the page size of the machines we test on.
constexpr size_t kStampPage = 4096;
constexpr size_t kStampWords = kStampPage / sizeof(uint64_t);

// splitmix64 of the address mixed with the generation: a page restored from
// the wrong dump (older generation) or at the wrong address never matches.
inline uint64_t stampWord(uint64_t addr, uint32_t gen)
{
    uint64_t z = addr ^ (uint64_t(gen) * 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// An anonymous private mapping whose pages are written only through
// write(): generation 0 means never written (or discarded) and reads as
// zeros.
class StampedRegion {
public:
    StampedRegion() = default;
    StampedRegion(const StampedRegion &) = delete;
    StampedRegion &operator=(const StampedRegion &) = delete;
    ~StampedRegion() { unmap(); }

    // Returns false (errno set) if the mapping fails.
    bool map(size_t pages)
    {
        unmap();
        void *p = mmap(nullptr, pages * kStampPage, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return false;
        base_ = static_cast<uint64_t *>(p);
        gen_.assign(pages, 0);
        return true;
    }
    void unmap()
    {
        if (base_)
            munmap(base_, gen_.size() * kStampPage);
        base_ = nullptr;
        gen_.clear();
    }
    size_t pages() const { return gen_.size(); }
    bool mapped() const { return base_ != nullptr; }

    // Rewrites page i with its next generation.
    void write(size_t i)
    {
        uint32_t g = ++gen_[i];
        uint64_t *p = base_ + i * kStampWords;
        for (size_t w = 0; w < kStampWords; w++)
            p[w] = stampWord(reinterpret_cast<uint64_t>(&p[w]), g);
    }
    // Gives page i back to the kernel: it reads as zeros from now on.
    void discard(size_t i)
    {
        madvise(base_ + i * kStampWords, kStampPage, MADV_DONTNEED);
        gen_[i] = 0;
    }

    // Returns the number of pages that differ from what was written; the
    // first one is described in *first (prefixed with name).
    size_t verify(const char *name, std::string *first) const
    {
        size_t bad = 0;
        for (size_t i = 0; i < gen_.size(); i++) {
            const uint64_t *p = base_ + i * kStampWords;
            for (size_t w = 0; w < kStampWords; w++) {
                uint64_t want = gen_[i] ? stampWord(reinterpret_cast<uint64_t>(&p[w]), gen_[i]) : 0;
                if (p[w] == want)
                    continue;
                if (!bad++) {
                    char buf[256];
                    std::snprintf(buf, sizeof(buf), "%s page %zu (%p) gen %u word %zu", name, i,
                                  static_cast<const void *>(p), gen_[i], w);
                    *first = buf;
                }
                break;
            }
        }
        return bad;
    }

private:
    uint64_t *base_ = nullptr;
    std::vector<uint32_t> gen_;
};

// The one-line verdict the workloads report after checking `checked`
// pages: "OK N pages match" or "FAIL B of N pages differ; first: ...".
inline std::string verifyReport(size_t bad, size_t checked, const std::string &first)
{
    char buf[512];
    if (bad)
        std::snprintf(buf, sizeof(buf), "FAIL %zu of %zu pages differ; first: %s\n", bad, checked,
                      first.c_str());
    else
        std::snprintf(buf, sizeof(buf), "OK %zu pages match\n", checked);
    return buf;
}

} // namespace ooh::testprog

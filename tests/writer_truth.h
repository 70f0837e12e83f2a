// SPDX-License-Identifier: Apache-2.0
// What ooh-dirty-writer answers for a round (tests/progs/dirty_writer.cpp)
// and the bound its own record of what it did puts on what a tracker may
// report wholesale. Header-only: the integration tests and the VM's guest
// check (which links no test library) share it.
#pragma once

#include "page_range.h"

#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace ooh::test {

// One round of the writer, as it answered it.
struct GroundTruth {
    std::vector<PageRange> written;   // pages it wrote
    std::vector<PageRange> discarded; // pages it discarded (MADV_DONTNEED)
    std::vector<PageRange> created;   // mappings it created, moved or grew (brk too)
    std::vector<PageRange> shared;    // its shared mappings at the end of the round
};

enum class WriterLine { Record, End, Bad };

// Adds one line of the writer's answer to `truth`.
inline WriterLine parseWriterLine(const char *line, GroundTruth *truth)
{
    if (std::strncmp(line, "end ", 4) == 0)
        return WriterLine::End;
    char kind = 0;
    unsigned long long s = 0, e = 0;
    if (std::sscanf(line, "%c %llx %llx", &kind, &s, &e) != 3 || e <= s)
        return WriterLine::Bad;
    std::vector<PageRange> *list = kind == 'w'   ? &truth->written
                                   : kind == 'd' ? &truth->discarded
                                   : kind == 'c' ? &truth->created
                                   : kind == 's' ? &truth->shared
                                                 : nullptr;
    if (!list)
        return WriterLine::Bad;
    list->push_back({s, e, false});
    return WriterLine::Record;
}

// The wholesale part of a collect against what the writer did. A tracker
// may report whole what it cannot track exactly: mappings created, moved
// or grown since the previous collect, discarded ranges (uffd-wp reports a
// discard in two collects: the kernel zaps the pages after the event, so
// a collect may fall between the two), and shared mappings (written
// through the page cache too). Anything else reported whole is a tracker
// that gave up where it did not have to.
struct WholesaleBound {
    uint64_t wholesale_pages = 0; // reported wholesale
    uint64_t allowed_pages = 0;   // the writer's mappings above, as pages
    uint64_t outside_pages = 0;   // reported wholesale, outside them
    uint64_t first_outside = 0;   // the first such page
};

inline WholesaleBound boundWholesale(const std::vector<PageRange> &collected,
                                     const GroundTruth &truth,
                                     const std::vector<PageRange> &discarded_before,
                                     uint64_t page_size)
{
    std::vector<PageRange> allowed;
    for (const auto *list : {&truth.created, &truth.discarded, &discarded_before, &truth.shared})
        for (PageRange r : *list) {
            r.wholesale = false;
            allowed.push_back(r);
        }
    allowed = normalizeRanges(std::move(allowed));
    WholesaleBound b;
    b.allowed_pages = countPages(allowed, page_size);
    size_t j = 0;
    for (const PageRange &w : normalizeRanges(collected)) {
        if (!w.wholesale)
            continue;
        b.wholesale_pages += w.bytes() / page_size;
        // Both lists are sorted and their ranges disjoint: walk them once.
        uint64_t at = w.start;
        while (at < w.end) {
            while (j < allowed.size() && allowed[j].end <= at)
                ++j;
            if (j < allowed.size() && allowed[j].start <= at) {
                at = std::min(allowed[j].end, w.end);
                continue;
            }
            uint64_t gap_end = j < allowed.size() ? std::min(allowed[j].start, w.end) : w.end;
            if (b.outside_pages == 0)
                b.first_outside = at;
            b.outside_pages += (gap_end - at) / page_size;
            at = gap_end;
        }
    }
    return b;
}

inline std::string describe(const WholesaleBound &b)
{
    char buf[320];
    std::snprintf(buf, sizeof(buf),
                  "%" PRIu64 " pages reported wholesale, %" PRIu64 " of them outside the %" PRIu64
                  " pages of mappings the writer created, moved, grew, discarded or shares "
                  "(first at %#" PRIx64 ")",
                  b.wholesale_pages, b.outside_pages, b.allowed_pages, b.first_outside);
    return buf;
}

} // namespace ooh::test

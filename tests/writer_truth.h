// SPDX-License-Identifier: Apache-2.0
// What ooh-dirty-writer answers for a round (tests/progs/dirty_writer.cpp),
// parsed. Header-only: the integration tests and the VM's guest check
// (which links no test library) share it.
#pragma once

#include "page_range.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

namespace ooh::test {

// One round of the writer, as it answered it.
struct GroundTruth {
    std::vector<PageRange> written;    // pages it wrote
    std::vector<PageRange> discarded;  // pages it discarded (MADV_DONTNEED)
    std::vector<PageRange> created;    // mappings it created, moved or grew (brk too)
    std::vector<PageRange> shared;     // its shared mappings at the end of the round
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

} // namespace ooh::test

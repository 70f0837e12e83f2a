// SPDX-License-Identifier: Apache-2.0
// Parser for /proc/PID/maps, used by backends and self-tracking to find and
// classify mappings.
#pragma once

#include "page_range.h"
#include "result.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ooh {

struct MapEntry {
    uint64_t start = 0;
    uint64_t end = 0;
    bool read = false, write = false, exec = false, shared = false;
    uint64_t offset = 0;
    uint64_t inode = 0;
    std::string path; // may be empty, "[heap]", "[stack]", "[vdso]", ...

    // Kernel-provided mappings that no user write can reach and that
    // checkpointers recreate rather than dump.
    bool isKernelSpecial() const
    {
        return path == "[vvar]" || path == "[vvar_vclock]" || path == "[vsyscall]" ||
               path == "[vdso]" || path == "[uprobes]";
    }
};

// Appends every shared mapping of `maps` (MAP_SHARED files, memfds, shared
// anonymous memory) whole, as wholesale ranges. Their pages change through
// the page cache too (write(), pwrite() by the target or anyone), which no
// page-table-based log sees: every backend reports them at every collect.
void appendSharedMappings(const std::vector<MapEntry> &maps, std::vector<PageRange> &out);

// Parses one line of /proc/PID/maps; false if malformed.
bool parseMapsLine(std::string_view line, MapEntry *out);
// Parses the whole text of /proc/PID/maps (`what` names it in errors).
Result<std::vector<MapEntry>> parseMaps(std::string_view text, const std::string &what);
// Reads and parses /proc/PID/maps through an open fd, from its start.
Result<std::vector<MapEntry>> readMaps(int maps_fd, const std::string &what);

} // namespace ooh

namespace ooh {

// The VMAs intersecting [start, end) of the process whose /proc/PID/maps is
// open as maps_fd, clipped to the range. Uses the PROCMAP_QUERY ioctl (6.11)
// and falls back to parsing the whole file on older kernels. Only start,
// end, the permission flags and (for anonymous special mappings) the path
// are filled in.
Result<std::vector<MapEntry>> vmasIn(int maps_fd, uint64_t start, uint64_t end);

} // namespace ooh

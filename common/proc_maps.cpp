// SPDX-License-Identifier: Apache-2.0
// Implementation of proc_maps.h.
#include "proc_maps.h"

#include "page_range.h"
#include "proc_file.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace ooh {

bool parseMapsLine(std::string_view line, MapEntry *out)
{
    // "start-end perms offset dev inode   path"
    std::string copy(line);
    char perms[5] = {};
    unsigned dev_major = 0, dev_minor = 0;
    int path_pos = 0;
    MapEntry e;
    if (std::sscanf(copy.c_str(), "%" SCNx64 "-%" SCNx64 " %4s %" SCNx64 " %x:%x %" SCNu64 " %n",
                    &e.start, &e.end, perms, &e.offset, &dev_major, &dev_minor, &e.inode,
                    &path_pos) < 7)
        return false;
    if (e.end <= e.start || std::string_view(perms).size() != 4)
        return false;
    e.read = perms[0] == 'r';
    e.write = perms[1] == 'w';
    e.exec = perms[2] == 'x';
    e.shared = perms[3] == 's';
    if (path_pos > 0 && static_cast<size_t>(path_pos) <= copy.size())
        e.path = copy.substr(path_pos);
    while (!e.path.empty() && (e.path.back() == '\n' || e.path.back() == ' '))
        e.path.pop_back();
    *out = std::move(e);
    return true;
}

Result<std::vector<MapEntry>> parseMaps(std::string_view text, const std::string &what)
{
    std::vector<MapEntry> maps;
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        MapEntry e;
        if (!parseMapsLine(line, &e))
            return makeError(EPROTO, "cannot parse line of " + what + ": " + std::string(line));
        maps.push_back(std::move(e));
    }
    return maps;
}

Result<std::vector<MapEntry>> readMaps(int maps_fd, const std::string &what)
{
    auto text = readAll(maps_fd, what);
    if (!text)
        return text.takeError();
    return parseMaps(*text, what);
}

} // namespace ooh

#include "compat/linux_mm.h"

#include <sys/ioctl.h>
#include <unistd.h>

namespace ooh {

namespace {

Result<std::vector<MapEntry>> vmasInByParsing(int maps_fd, uint64_t start, uint64_t end)
{
    auto maps = readMaps(maps_fd, "/proc/PID/maps");
    if (!maps)
        return maps.takeError();
    std::vector<MapEntry> out;
    for (MapEntry &e : *maps) {
        if (e.end <= start || e.start >= end)
            continue;
        e.start = std::max(e.start, start);
        e.end = std::min(e.end, end);
        out.push_back(std::move(e));
    }
    return out;
}

} // namespace

void appendSharedMappings(const std::vector<MapEntry> &maps, std::vector<PageRange> &out)
{
    for (const MapEntry &m : maps)
        if (m.shared && !m.isKernelSpecial())
            out.push_back({m.start, m.end, true});
}

Result<std::vector<MapEntry>> vmasIn(int maps_fd, uint64_t start, uint64_t end)
{
    std::vector<MapEntry> out;
    uint64_t addr = start;
    char name[256];
    while (addr < end) {
        struct procmap_query q = {};
        q.size = sizeof(q);
        q.query_flags = PROCMAP_QUERY_COVERING_OR_NEXT_VMA;
        q.query_addr = addr;
        q.vma_name_addr = reinterpret_cast<uint64_t>(name);
        q.vma_name_size = sizeof(name);
        if (::ioctl(maps_fd, PROCMAP_QUERY, &q) < 0) {
            if (errno == ENOENT)
                break; // no VMA at or after addr
            if (errno == ENOTTY || errno == EINVAL)
                return vmasInByParsing(maps_fd, start, end);
            return Error::fromErrno(errno, "PROCMAP_QUERY");
        }
        if (q.vma_start >= end)
            break;
        MapEntry e;
        e.start = std::max<uint64_t>(q.vma_start, start);
        e.end = std::min<uint64_t>(q.vma_end, end);
        e.read = q.vma_flags & PROCMAP_QUERY_VMA_READABLE;
        e.write = q.vma_flags & PROCMAP_QUERY_VMA_WRITABLE;
        e.exec = q.vma_flags & PROCMAP_QUERY_VMA_EXECUTABLE;
        e.shared = q.vma_flags & PROCMAP_QUERY_VMA_SHARED;
        e.offset = q.vma_offset;
        e.inode = q.inode;
        if (q.vma_name_size > 0)
            e.path.assign(name, strnlen(name, std::min<size_t>(q.vma_name_size, sizeof(name))));
        out.push_back(std::move(e));
        addr = q.vma_end;
    }
    return out;
}

} // namespace ooh

// SPDX-License-Identifier: Apache-2.0
// Implementation of oohd/proc_maps.h.
#include "proc_maps.h"

#include <cinttypes>
#include <cstdio>
#include <fstream>

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

Result<std::vector<MapEntry>> readMaps(const std::string &maps_path)
{
    std::ifstream in(maps_path);
    if (!in)
        return Error::fromErrno(errno, "open " + maps_path);
    std::vector<MapEntry> maps;
    std::string line;
    while (std::getline(in, line)) {
        MapEntry e;
        if (!parseMapsLine(line, &e))
            return makeError(EPROTO, "cannot parse line of " + maps_path + ": " + line);
        maps.push_back(std::move(e));
    }
    return maps;
}

} // namespace ooh

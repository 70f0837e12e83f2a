// SPDX-License-Identifier: Apache-2.0
// Implementation of common/log.h: one write(2) per line so lines from
// several components never interleave.
#include "log.h"

#include <cstdlib>
#include <string>
#include <unistd.h>

namespace ooh::log {

namespace {
Level g_level = Level::Notice;
bool g_prefix = std::getenv("JOURNAL_STREAM") != nullptr;
} // namespace

void setLevel(Level l) { g_level = l; }
Level level() { return g_level; }
void setPrefixPriorities(bool enabled) { g_prefix = enabled; }

bool parseLevel(std::string_view t, Level *out)
{
    static const struct {
        std::string_view name;
        Level level;
    } names[] = {{"error", Level::Error},  {"err", Level::Error},     {"warning", Level::Warning},
                 {"warn", Level::Warning}, {"notice", Level::Notice}, {"info", Level::Info},
                 {"debug", Level::Debug}};
    for (const auto &n : names) {
        if (t == n.name) {
            *out = n.level;
            return true;
        }
    }
    if (t.size() == 1 && t[0] >= '3' && t[0] <= '7') {
        *out = static_cast<Level>(t[0] - '0');
        return true;
    }
    return false;
}

Line::~Line()
{
    std::string line;
    if (g_prefix)
        line = "<" + std::to_string(static_cast<int>(level_)) + ">";
    line.append(category_);
    line.append(": ");
    line.append(stream_.str());
    line.push_back('\n');
    // Best effort: a log line that cannot be written is dropped.
    ssize_t r = ::write(STDERR_FILENO, line.data(), line.size());
    (void)r;
}

} // namespace ooh::log

// SPDX-License-Identifier: Apache-2.0
// Logging to stderr with syslog priority prefixes ("<3>"), which journald
// turns into priorities. One category (a name in each line) per component;
// one level for all of them, set at run time.
#pragma once

#include <sstream>
#include <string_view>

namespace ooh::log {

enum class Level { Error = 3, Warning = 4, Notice = 5, Info = 6, Debug = 7 };

void setLevel(Level level);
Level level();
// Parses "error", "warning", "notice", "info", "debug" or a digit 3..7.
bool parseLevel(std::string_view text, Level *out);
// Adds the "<N>" prefixes only when stderr goes to journald (JOURNAL_STREAM)
// or when forced; a terminal gets plain lines.
void setPrefixPriorities(bool enabled);

class Line {
public:
    Line(Level level, std::string_view category) : level_(level), category_(category) {}
    ~Line();
    template <typename T> Line &operator<<(const T &v)
    {
        stream_ << v;
        return *this;
    }

private:
    Level level_;
    std::string_view category_;
    std::ostringstream stream_;
};

} // namespace ooh::log

#define OOH_LOG(category, lvl)                                                                     \
    if (::ooh::log::Level::lvl <= ::ooh::log::level())                                             \
    ::ooh::log::Line(::ooh::log::Level::lvl, category)

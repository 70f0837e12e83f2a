// SPDX-License-Identifier: Apache-2.0
// Implementation of common/proc_file.h.
#include "proc_file.h"

#include <unistd.h>

namespace ooh {

Result<std::string> readAll(int fd, const std::string &what)
{
    std::string text;
    char buf[16384];
    for (;;) {
        ssize_t n = ::pread(fd, buf, sizeof(buf), static_cast<off_t>(text.size()));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return Error::fromErrno(errno, "read " + what);
        if (n == 0)
            return text;
        text.append(buf, static_cast<size_t>(n));
    }
}

std::optional<std::string_view> keyedField(std::string_view text, std::string_view key)
{
    for (size_t pos = 0; pos < text.size();) {
        size_t nl = text.find('\n', pos);
        std::string_view line = text.substr(pos, nl == std::string_view::npos ? nl : nl - pos);
        if (line.substr(0, key.size()) == key) {
            line.remove_prefix(key.size());
            while (!line.empty() && (line.front() == ' ' || line.front() == '\t'))
                line.remove_prefix(1);
            return line;
        }
        if (nl == std::string_view::npos)
            break;
        pos = nl + 1;
    }
    return std::nullopt;
}

} // namespace ooh

// SPDX-License-Identifier: Apache-2.0
// Implementation of common/pidfd.h.
#include "pidfd.h"

#include "unique_fd.h"

#include <cstdlib>
#include <fcntl.h>
#include <string>
#include <string_view>
#include <unistd.h>

namespace ooh {

Result<pid_t> pidOfPidfd(int pidfd)
{
    const std::string path = "/proc/self/fdinfo/" + std::to_string(pidfd);
    UniqueFD fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.isValid())
        return Error::fromErrno(errno, "open " + path);
    std::string text;
    char buf[1024];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return Error::fromErrno(errno, "read " + path);
        if (n == 0)
            break;
        text.append(buf, static_cast<size_t>(n));
    }
    // "Pid:" is in a pidfd's fdinfo only: -1 once the process exited, 0
    // when it is outside our namespace.
    for (size_t pos = 0; pos < text.size();) {
        size_t nl = text.find('\n', pos);
        std::string_view line(text.data() + pos, (nl == std::string::npos ? text.size() : nl) - pos);
        if (line.rfind("Pid:", 0) == 0) {
            long pid = std::strtol(std::string(line.substr(4)).c_str(), nullptr, 10);
            return pid > 0 ? static_cast<pid_t>(pid) : 0;
        }
        pos = nl == std::string::npos ? text.size() : nl + 1;
    }
    return makeError(EBADF, "fd " + std::to_string(pidfd) + " is not a pidfd");
}

} // namespace ooh

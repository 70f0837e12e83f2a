// SPDX-License-Identifier: Apache-2.0
// Implementation of common/pidfd.h.
#include "pidfd.h"

#include "proc_file.h"
#include "unique_fd.h"

#include <cstdlib>
#include <fcntl.h>
#include <string>

namespace ooh {

Result<pid_t> pidOfPidfd(int pidfd)
{
    const std::string path = "/proc/self/fdinfo/" + std::to_string(pidfd);
    UniqueFD fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.isValid())
        return Error::fromErrno(errno, "open " + path);
    auto read = readAll(fd.get(), path);
    if (!read)
        return read.takeError();
    // "Pid:" is in a pidfd's fdinfo only: -1 once the process exited, 0
    // when it is outside our namespace.
    if (auto pid = keyedField(*read, "Pid:")) {
        long value = std::strtol(std::string(*pid).c_str(), nullptr, 10);
        return value > 0 ? static_cast<pid_t>(value) : 0;
    }
    return makeError(EBADF, "fd " + std::to_string(pidfd) + " is not a pidfd");
}

} // namespace ooh

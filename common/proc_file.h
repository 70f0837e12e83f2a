// SPDX-License-Identifier: Apache-2.0
// Small /proc files (status, stat, fdinfo, maps): read whole through an
// open fd, and the "Key:  value" lines of status-like files.
#pragma once

#include "result.h"

#include <optional>
#include <string>
#include <string_view>

namespace ooh {

// The whole contents of `fd`, read from offset 0 with pread (so a /proc
// file held open is read afresh each time, and the fd's offset is left
// alone). Errors carry errno and name `what` (the file's name).
Result<std::string> readAll(int fd, const std::string &what);

// The value of the first line of `text` that starts with `key` (e.g.
// "TracerPid:"), without the blanks after the key; nullopt if none.
std::optional<std::string_view> keyedField(std::string_view text, std::string_view key);

} // namespace ooh

// SPDX-License-Identifier: Apache-2.0
// Session: the daemon's state for one tracked process.
#pragma once

#include "backend.h"
#include "peer_access.h"
#include "target.h"

#include <cstdint>
#include <memory>
#include <string>

namespace ooh {

struct SessionStats {
    uint64_t collects = 0;
    uint64_t pages_reported = 0;
    uint64_t pages_wholesale = 0;
    uint64_t last_collect_ns = 0;
    uint64_t last_collect_pages = 0;
    uint64_t tracked_since_ns = 0;
};

struct Session {
    enum class State { Active, Exited, Lost };

    Target process;
    std::string backend;
    std::unique_ptr<Tracker> tracker;
    uid_t owner_uid = 0;
    uint64_t epoch = 1;  // the epoch the next collect closes
    State state = State::Active;
    std::string lost_reason;
    SessionStats stats;
};

} // namespace ooh

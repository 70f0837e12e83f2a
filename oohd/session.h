// SPDX-License-Identifier: Apache-2.0
// Session: the daemon's state for one tracked process.
#pragma once

#include "backend.h"
#include "target.h"

#include <cstdint>
#include <memory>
#include <string>
#include <sys/types.h>

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
    // Starting: its track runs on a worker; no process or tracker yet.
    enum class State { Starting, Active, Exited, Lost };

    // Names this session and no other, of this oohd or of an earlier one
    // (random): a client that saw it can tell a session that was replaced.
    uint64_t id = 0;
    Target process;
    std::string backend;
    std::unique_ptr<Tracker> tracker; // null while a worker has it
    int event_fd = -1;                // the tracker's event fd the loop watches; -1: none
    bool busy = false;                // its track or a collect runs on a worker
    uid_t owner_uid = 0;
    uint64_t epoch = 1; // the epoch the next collect closes
    State state = State::Starting;
    std::string lost_reason;
    SessionStats stats;
};

} // namespace ooh

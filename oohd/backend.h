// SPDX-License-Identifier: Apache-2.0
// The backend interface: one implementation per kind of dirty log (uffd-wp,
// soft-dirty, the OoH guest module's PML ring). The server only sees this.
#pragma once

#include "page_range.h"
#include "result.h"
#include "target.h"

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ooh {

struct BackendProbe {
    bool available = false;
    std::string reason; // why not, or what was found (shown by `oohctl backends`)
};

// Tracks one process. Owned by the server's session for that process.
class Tracker {
public:
    virtual ~Tracker() = default;

    // Get-and-reset. Appends every range written since the previous collect
    // (or since track()) to `out`, and re-arms, atomically per page. Must
    // never under-report: where it cannot be exact, it appends the whole
    // affected range with wholesale = true, or fails (the session is then
    // marked lost and every later collect fails until the client re-tracks).
    virtual Result<void> collect(std::vector<PageRange> &out) = 0;

    // An fd the daemon watches for EPOLLIN (e.g. a userfaultfd with events,
    // a UIO device); -1 for none. handleEvents() is called when it is ready
    // and must not block.
    virtual int eventFd() const { return -1; }
    virtual Result<void> handleEvents() { return {}; }

    // Bytes of the target's address space under exact tracking (for stats).
    virtual uint64_t trackedBytes() const { return 0; }

    // Whether collect() also reports the pages whose contents changed
    // without a write: discarded (MADV_DONTNEED, MADV_FREE), so that a page
    // outside the set has the contents it had at the previous collect,
    // present or not. A checkpointer may then skip looking up the presence
    // of unreported pages (CRIU's DIRTY_PAGES_ALL_CHANGES). False where the
    // tracker cannot tell (uffd-wp without discard events).
    virtual bool reportsDiscards() const = 0;
};

class Backend {
public:
    virtual ~Backend() = default;

    virtual std::string_view name() const = 0;
    // Feature probe, like CRIU's kerndat. The session table decides when to
    // probe and keeps the answer: at start-up, and again each time a client
    // asks for a backend whose last probe said unavailable (the guest
    // module can be loaded after oohd started). A backend keeps what its
    // probe found (features, mode) but never probes by itself.
    virtual BackendProbe probe() = 0;
    // Starts tracking `target`; the first epoch begins now. Fails (with
    // the probe's reason) unless the last probe said available.
    virtual Result<std::unique_ptr<Tracker>> track(const Target &target) = 0;
};

// Every backend this build knows, in order of preference for automatic
// choice (the first available one is the default). See backends/registry.cpp.
std::vector<std::unique_ptr<Backend>> makeBackends();

} // namespace ooh

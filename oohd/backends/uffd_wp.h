// SPDX-License-Identifier: Apache-2.0
// The uffd-wp backend (the default): a userfaultfd bound to the target's mm
// in async write-protect mode, read and re-armed with PAGEMAP_SCAN.
#pragma once

#include "backend.h"

#include <cstdint>

namespace ooh {

class UffdWpBackend final : public Backend {
public:
    std::string_view name() const override { return "uffd-wp"; }
    BackendProbe probe() override;
    Result<std::unique_ptr<Tracker>> track(const Target &target) override;

private:
    uint64_t features_ = 0; // the uffd features the probe found
};

} // namespace ooh

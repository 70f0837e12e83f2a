// SPDX-License-Identifier: Apache-2.0
// The "pml-ring" backend: the OoH guest module's per-tracker PML ring (through
// /dev/ooh-ctl and a UIO device). SPML rings carry guest-physical frames,
// mapped back to the target's pages by SpmlReverseMap; EPML rings carry the
// target's virtual pages directly.
#pragma once

#include "backend.h"

#include <cstdint>
#include <string>

namespace ooh {

class PmlRingBackend final : public Backend {
public:
    enum class Mode { Auto, Spml, Epml };

    // Auto picks EPML where the transport has it (no reverse map needed),
    // else SPML; the environment variable OOH_PML_MODE=spml|epml overrides.
    explicit PmlRingBackend(Mode mode = Mode::Auto) : requested_(mode) {}

    std::string_view name() const override { return "pml-ring"; }
    BackendProbe probe() override;
    Result<std::unique_ptr<Tracker>> track(const Target &target) override;

private:
    Mode requested_;
    // What the last probe found.
    Mode mode_ = Mode::Auto;
    bool available_ = false;
    std::string reason_ = "not probed";
};

// Finds /dev/uioN for a UIO index, checking sysfs says it is our ring.
std::string oohUioDevicePath(unsigned index);

} // namespace ooh

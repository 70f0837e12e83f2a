// SPDX-License-Identifier: Apache-2.0
// The list of backends, in order of preference for automatic choice.
#include "backend.h"
#include "pml_ring.h"
#include "soft_dirty.h"
#include "uffd_wp.h"

namespace ooh {

std::vector<std::unique_ptr<Backend>> makeBackends()
{
    std::vector<std::unique_ptr<Backend>> backends;
    backends.push_back(std::make_unique<UffdWpBackend>());
    backends.push_back(std::make_unique<PmlRingBackend>());
    backends.push_back(std::make_unique<SoftDirtyBackend>());
    return backends;
}

} // namespace ooh

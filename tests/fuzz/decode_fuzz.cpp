// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the daemon's message decoder must never crash, and
// whatever it accepts must encode again within the size limit.
#include "wire.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    auto msg = ooh::wire::decode(data, size);
    if (!msg)
        return 0;
    auto again = ooh::wire::encode(*msg);
    if (!again && size <= ooh::wire::kMaxMessageBytes / 2)
        std::abort(); // accepted input that cannot be re-encoded
    return 0;
}

// SPDX-License-Identifier: Apache-2.0
// ooh.hpp compiles alone as C++, and the C structs have the expected ABI.
#include <ooh/ooh.hpp>

static_assert(sizeof(ooh_range) == 24, "ooh_range is part of the ABI");
static_assert(sizeof(ooh_collect_info) == 32, "ooh_collect_info is part of the ABI");
static_assert(sizeof(ooh_session) == 64, "ooh_session is part of the ABI");

extern "C" int ooh_public_header_c_size(void);

int main() { return ooh_public_header_c_size() == 120 ? 0 : 1; }

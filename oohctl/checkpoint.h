// SPDX-License-Identifier: Apache-2.0
// `oohctl checkpoint`: iterative CRIU pre-dumps with --ooh until the dirty
// set converges, then the final dump (and optionally a local restore).
#pragma once

namespace ooh {

// argv[0] is "checkpoint". Returns the process exit status.
int runCheckpoint(int argc, char **argv);

} // namespace ooh

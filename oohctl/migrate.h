// SPDX-License-Identifier: Apache-2.0
// `oohctl migrate`: live migration of a process tree to another host over
// CRIU's page server, with iterative `criu pre-dump --ooh` rounds until the
// dirty set converges (the policy of `oohctl checkpoint`), a final dump, and
// a restore on the destination.
#pragma once

namespace ooh {

// argv[0] is "migrate". Returns the process exit status.
int runMigrate(int argc, char **argv);

} // namespace ooh

#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Builds this tree for another architecture in a build directory of its own
# (configured once, then incremental): what the native build runs for
# tests/vm's arm64 guest. Touches STAMP when the build is up to date.
# usage: build.sh SOURCE_DIR BUILD_DIR CROSS_FILE STAMP
set -eu
src=$1 build=$2 cross=$3 stamp=$4
if [ ! -f "$build/build.ninja" ]; then
    # The daemon, library, CLI, test programs and tests; nothing that
    # builds upstream code or boots a VM.
    meson setup "$build" "$src" --cross-file "$cross" \
        -Dbench=false -Dfuzz=disabled -Dgc=disabled -Dcriu=disabled -Dsystemd=disabled \
        -Dvm_tests=disabled -Dhypervisor_tests=disabled -Dcross_aarch64=disabled
fi
ninja -C "$build"
touch "$stamp"

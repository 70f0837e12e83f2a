#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Checks that every C and C++ source of the project is formatted as its
# directory's .clang-format says (C++ at the top; kernel style in the C
# directories). Fix with: scripts/ooh format
#
# usage: check-format.sh CLANG_FORMAT SOURCE_ROOT
# Files named in tests/format/exclude.txt (with the reason) are left alone.
# Exit 77 (skipped) without clang-format.
set -uo pipefail
clang_format=${1-}
root=${2:?usage: check-format.sh CLANG_FORMAT SOURCE_ROOT}
[ -n "$clang_format" ] && [ -x "$clang_format" ] ||
    { echo "SKIP: clang-format is not installed (Debian package clang-format)"; exit 77; }
cd "$root" || exit 1

# The tracked sources (a clone), or every source (an unpacked tarball).
if git rev-parse --is-inside-work-tree > /dev/null 2>&1; then
    mapfile -t files < <(git ls-files '*.c' '*.h' '*.cpp' '*.hpp')
else
    mapfile -t files < <(find . -name build -prune -o \( -name '*.c' -o -name '*.h' -o \
        -name '*.cpp' -o -name '*.hpp' \) -print | sed 's|^\./||' | sort)
fi
[ ${#files[@]} -gt 0 ] || { echo "FAIL: no sources found under $root"; exit 1; }
mapfile -t files < <(printf '%s\n' "${files[@]}" |
    grep -vxF -f <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' tests/format/exclude.txt | grep -v '^$'))

bad=()
for f in "${files[@]}"; do
    "$clang_format" --dry-run --Werror "$f" > /dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
    echo "FAIL: ${#bad[@]} of ${#files[@]} files are not formatted ($("$clang_format" --version)):"
    printf '  %s\n' "${bad[@]}"
    echo "first differences:"
    "$clang_format" --dry-run "${bad[0]}" 2>&1 | head -n 20
    echo "fix with: scripts/ooh format"
    exit 1
fi
echo "PASS: ${#files[@]} files formatted as their .clang-format says"

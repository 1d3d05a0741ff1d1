#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The seed-* files of the tree's corpus are what make-seeds writes today:
# an encoder or a .proto that changed without the seeds rerun fails here
# (docs/fuzzing.md, "Adding a seed").
# Usage: check-seeds.sh MAKE_SEEDS CORPUS
set -eu
make_seeds=$1 corpus=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$make_seeds" "$out"
n=0 stale=0
for f in "$out"/*/seed-*; do
        rel=${f#"$out"/}
        n=$((n + 1))
        if ! cmp -s "$f" "$corpus/$rel"; then
                echo "stale: $corpus/$rel (rerun: make-seeds $corpus)"
                stale=1
        fi
done
[ "$n" -gt 0 ] || { echo "make-seeds wrote no seeds"; exit 1; }
[ "$stale" = 0 ] || exit 1
echo "$n seeds as make-seeds writes them"

#!/bin/sh
# The selector's quality as a user meets it, on the host this runs on: 12 shapes drawn fresh
# (seed 20261123, m, n, k log-uniform in [64, 4096]), none in any training set.
# Devices: every device of the host (e.g. CPU, Vulkan GPU, NVIDIA OpenCL GPU, PoCL), in both halves.
# 1. As a user meets it: an empty user cache, one process per shape, on-line tuning on, 80 calls:
#    the first call's choice and the last call's (after tuning).
# 2. Then every candidate measured at every shape (tune --no-train), into another folder.
set -u
# SHAPES and TILEGEMM may be set from outside (the CPU-only class: smaller shapes, lavapipe is slow).
TILEGEMM=${TILEGEMM:-.device/tilegemm}
SHAPES=${SHAPES:-"1478x2674x975 124x1881x93 2224x322x139 973x87x374 198x101x1812 207x446x249 3311x1497x79 1956x1491x3781 145x2617x466 103x905x1780 344x298x2544 963x366x1298"}
rm -rf /tmp/fresh-cache /tmp/exhaustive-cache
export TILEGEMM_CACHE=/tmp/fresh-cache
for s in $SHAPES; do
  echo "== $s"
  "$TILEGEMM" run --shape "$s" --reps 80 2>&1
done > "$OUT/workload.txt"
mkdir -p /tmp/fresh-cache && cp -r /tmp/fresh-cache "$OUT/cache-after"
TILEGEMM_CACHE=/tmp/exhaustive-cache "$TILEGEMM" tune --shapes "$(echo $SHAPES | tr ' ' ',')" \
  --no-train --reps 5 --max-seconds 0.5 --out "$OUT/exhaustive" > "$OUT/exhaustive.txt" 2>&1
tar -czf "$OUT/data.tgz" -C "$OUT" cache-after exhaustive && rm -rf "$OUT/cache-after" "$OUT/exhaustive"
tail -3 "$OUT/exhaustive.txt"
grep -c "first call" "$OUT/workload.txt"

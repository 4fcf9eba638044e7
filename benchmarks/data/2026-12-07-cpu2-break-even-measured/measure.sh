#!/bin/bash
# 2026-12-07 (session 8), CPU only: the CPU backend's thread break-even measured per host at first
# use (this build; its log line says where it put it) against the fixed rule it replaced (every
# core once (1 − 1/threads) of the work exceeds 155³ multiply-adds, `tilegemm_old`, main at
# 30613a9), OpenBLAS (numpy) beside, three rounds, then odd-shape checks on the host's cores.
# Staged for the H100 (`stage.sh` with both binaries and this file), where the run was refused (too
# little device time left); run instead on this project's 2-core CI class (2 vCPUs of an AMD EPYC)
# as `OUT=<folder> bash .device/measure.sh` from the repository root.
set -u
T=.device/tilegemm
O=.device/tilegemm_old
cd "$(dirname "$0")/.."
exec 2>>$OUT/log.txt
nproc
SHAPES=96,112,128,144,160,176,192,224,256
blas() { python3 .device/numpy_sgemm.py "$@" | python3 -c "import json,sys; [print(f\"{d['m']}x{d['n']}x{d['k']} {d['gflops']:.0f}\") for d in map(json.loads, sys.stdin)]"; }
for round in 1 2 3; do echo "== round $round"
  echo "-- openblas"; timeout 40 bash -c "$(declare -f blas); blas ${SHAPES//,/ }"
  for b in $T $O; do echo "-- $b"
    RUST_LOG=tilegemm::backend::cpu=info timeout 40 $b bench --backend cpu --shapes $SHAPES --max-seconds 0.2 2>&1 | grep -E "native \||every core" | sed 's/.*INFO[^]]*] //' | awk -F'|' 'NF>1 {print $6, $8; next} {print}' | tr -s ' '
  done
done | tee $OUT/cpu.txt
timeout 30 $T verify --backend cpu --shapes 127x129x131,161x159x160,200x199x201 --trans-a --beta 0.5 --ld-pad 3 2>&1 | tail -1 | tee $OUT/verify.txt
timeout 30 $T verify --backend cpu --shapes 150x149x151 --batch 5 --trans-b 2>&1 | tail -1 | tee -a $OUT/verify.txt
echo "== done"

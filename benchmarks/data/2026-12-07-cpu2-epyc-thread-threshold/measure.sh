#!/bin/bash
# On this project's 2-core CI class (2 vCPUs of an AMD EPYC), 2026-12-07: the CPU backend's thread
# threshold, this build (every core from 2·155³ multiply-adds on two cores) against the same with
# 2·120³, OpenBLAS (numpy) beside, four rounds. Binaries as staged for the eighth command
# (benchmarks/data/2026-12-07-h200-squares-vulkan-prefetch-cpu-threads/).
SH=128,144,160,176,192,224,256
for r in 1 2 3 4; do echo "== round $r"
  echo "-- openblas"; python3 ../shared/device/numpy_sgemm.py ${SH//,/ } | python3 -c "import json,sys; [print(f\"{d['m']}x{d['n']}x{d['k']} {d['gflops']:.0f}\") for d in map(json.loads, sys.stdin)]"
  for b in tilegemm tilegemm_z120; do echo "-- $b"
    timeout 200 ./$b bench --backend cpu --shapes $SH --max-seconds 0.3 2>/dev/null | grep native | awk -F'|' '{print $6, $8}' | tr -s ' '
  done
done

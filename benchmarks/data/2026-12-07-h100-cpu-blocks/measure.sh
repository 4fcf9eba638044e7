#!/bin/bash
# Command 2 of 2026-12-07 (session 6): the CPU backend cut into a block per thread (this build) against
# the crate's own threads (main, 9ecd39b) and OpenBLAS (numpy), three rounds, each round all three in turn.
set -u
T=.device/tilegemm
P=.device/tilegemm_prev
cd "$(dirname "$0")/.."
exec 2>>$OUT/log.txt
lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket"
nproc
SHAPES=128,160,192,256,384,512,768,1024,2048,64x4096x4096,4096x64x4096,128x128x16384,1000x1000x70
for round in 1 2 3; do echo "== round $round"
  echo "-- openblas"; timeout 60 python3 .device/numpy_sgemm.py ${SHAPES//,/ } | python3 -c "import json,sys; [print(f\"{d['m']}x{d['n']}x{d['k']} {d['gflops']:.0f}\") for d in map(json.loads, sys.stdin)]"
  for b in $T $P; do echo "-- $b"
    timeout 90 $b bench --backend cpu --shapes $SHAPES --max-seconds 0.5 2>/dev/null | grep -E "native" | awk -F'|' '{print $6, $8}' | tr -s ' '
  done
done | tee $OUT/cpu.txt
echo "== verify the blocks on 16 threads at odd shapes"
timeout 60 $T verify --backend cpu --shapes 1000x1000x70,777x1025x300,4097x65x129,65x4097x129,2048x2048x31 --trans-a --beta 0.5 --ld-pad 3 2>&1 | tail -2
timeout 60 $T verify --backend cpu --shapes 300x257x129 --batch 7 --trans-b 2>&1 | tail -1
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
case "$GPU" in *H200*)
echo "== H200: cuBLAS, then four members' squares on both APIs, one process per (kernel, API)"
timeout 60 python3 .device/cublas_sgemm.py 1024 1536 2048 3072 4096 8192 | tee $OUT/cublas.jsonl
export TILEGEMM_CACHE=$(mktemp -d)
for api in ocl wgpu; do echo "-- $api"
  for k in rb128x128x8_8x8_g8_p rb128x128x8_8x8_g8_p_streamk264 rb128x64x16_8x4_p rb128x64x16_8x4_p_streamk264; do
    timeout 40 $T bench --backend $api --device nvidia --kernel $k --sizes 1024,1536,2048,3072,4096,8192 --max-seconds 0.2 --fresh-engine --reference $OUT/cublas.jsonl 2>/dev/null | grep -E "$k " | awk -F'|' '{print $3, $5, $6, $7, $8, $12}' | tr -s ' ' | tee -a $OUT/sq.txt
  done
done;;
esac
echo "== done"

#!/bin/bash
# Session 2026-12-07, one command (the first two did not start): cuBLAS beside
# 1. the WGSL alignment fix vs the build before the batch prelude (e6236f7), alternating, 2 rounds;
# 2. split-K's new summing kernel vs the batched-GEMM sum (.device/tilegemm_head = d406772), both APIs;
# 3. halves of K (sk2) at 1024² and 2048²;
# 4. ptxas registers/spills of the OpenCL PTX and what NVIDIA's Vulkan driver compiled (pipeline caches).
set -u
T=.device/tilegemm
cd "$(dirname "$0")/.."
exec 2>>$OUT/log.txt
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
timeout 50 python3 .device/cublas_sgemm.py 1024 2048 4096 64x64x65536 128x128x16384 96x2048x8192 256x256x8192 | tee $OUT/cublas.jsonl
echo "== 1. WGSL: before the batch prelude (e6236f7) vs now, alternating (kernel: shape GFLOPS)"
# tilegemm_nobatch: this build with enter_batch emptied (single GEMMs only): what a batch-free
# specialisation could win at most.
for round in 1 2; do for bin in .device/tilegemm_prebatch $T $([ -x .device/tilegemm_nobatch ] && echo .device/tilegemm_nobatch); do
  for k in rb128x64x16_8x4_p rb128x128x8_8x8_g8_p; do echo "$round $bin $k $(timeout 30 $bin bench --backend wgpu --device nvidia --kernel $k --sizes 1024,4096 --max-seconds 1 2>/dev/null | grep NVIDIA | awk -F'|' '{print $6 $8}' | tr -s ' ' | tr '\n' ';')"; done
done; done
echo "== 2. split-K shapes: head (sum as a batched GEMM on tile16) vs new (summing kernel), both APIs (kernel shape ms GFLOPS)"
for api in wgpu ocl; do for bin in .device/tilegemm_head $T; do
  echo "-- $api $bin"
  timeout 60 $bin bench --backend $api --device nvidia --shapes 64x64x65536,128x128x16384,96x2048x8192,256x256x8192 --max-seconds 0.3 2>/dev/null | grep -E "_sk" | awk -F'|' '{print $5 $6 $7 $8}' | tr -s ' '
done; done
echo "== 3. halves of K at 1024 and 2048 (kernel: shape GFLOPS), both APIs"
for api in wgpu ocl; do for k in rb128x64x16_8x4_p rb128x64x16_8x4_p_sk2 rb128x64x16_8x4_p_sk4 rb128x128x8_8x8_g8_p rb128x128x8_8x8_g8_p_sk2; do
  echo "$api $k $(timeout 30 $T bench --backend $api --device nvidia --kernel $k --sizes 1024,2048 --max-seconds 0.7 2>/dev/null | grep NVIDIA | awk -F'|' '{print $6 $8}' | tr -s ' ' | tr '\n' ';')"
done; done
echo "== 4. what the compilers made: ptxas -v (OpenCL PTX, sm_90) and the Vulkan pipeline caches"
K=$(mktemp -d); timeout 150 $T devices --emit $K > /dev/null 2>&1
for k in tile16 rb64x64x16_4x4 rb128x64x16_8x4 rb128x64x16_8x4_p rb128x128x8_8x8 rb128x128x8_8x8_p rb128x128x8_8x8_g8_p rb128x128x16_8x8 rb64x128x16_4x8 rb128x128x8_8x8_db; do
  f=$(ls $K/ocl*NVIDIA*/$k.ptx 2>/dev/null | head -1); [ -z "$f" ] && { echo "-- $k: no PTX"; continue; }
  echo "-- $k: $(/usr/local/cuda/bin/ptxas -v --gpu-name sm_90 $f -o /tmp/$k.cubin 2>&1 | grep -E 'Used|spill|rror' | tr -s ' ' | tr '\n' ' ')"
  echo "   SASS: $(/usr/local/cuda/bin/cuobjdump -sass /tmp/$k.cubin 2>&1 | grep -oE '(FFMA|LDS[.A-Z0-9]*|LDG[.A-Z0-9]*|STS[.A-Z0-9]*|BAR[.A-Z]*|STL[.A-Z0-9]*|LDL[.A-Z0-9]*)' | sort | uniq -c | tr -s ' ' | tr '\n' ' ')"
done | tee $OUT/ptxas.txt
/usr/local/cuda/bin/cuobjdump -sass /tmp/rb128x64x16_8x4_p.cubin > $OUT/cl-sass-rb128x64x16_8x4_p.txt 2>&1
timeout 100 python3 .device/vkcache.py $K $OUT | tee $OUT/vkcache.txt
echo "== 5. selection with a fresh cache"
export TILEGEMM_CACHE=$(mktemp -d)
for s in 1024x1024x1024 128x128x16384 256x256x8192; do timeout 60 $T select $s 2>&1 | sed -n '1p'; done

#!/bin/bash
# Command 1 of 2026-12-07 (session 7): the CPU backend's blocks — as many as fit up to one per thread
# for small C (160³, 192³ as 3 × 3 blocks of 64 on 16 threads), equal shares of up to four blocks of
# ≥ 256 per thread taken dynamically for large C (this build, Y) — against X (Y, but small C keeps the
# crate's own threads), main (33aa103: one thread at 160³, the crate's threads at 192³, a static block
# per thread) and OpenBLAS (numpy); three rounds (two on an H200 host, whose GPU squares and split-K
# shapes run first), each round all four in turn. Then one core each. First, what NVIDIA's Vulkan
# compiler makes of the WGSL kernels (registers), which no command has seen before.
set -u
Y=.device/tilegemm
X=.device/tilegemm_x
M=.device/tilegemm_main
cd "$(dirname "$0")/.."
exec 2>>$OUT/log.txt
lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket|L2|L3"
nproc
echo "== Vulkan pipeline statistics (benchmarks/vkstats), single GEMM, no transposes: whole tiles, then guarded"
E=$(mktemp -d); timeout 60 $Y devices --emit $E >/dev/null 2>&1
for wt in 1 0; do echo "-- WHOLE_TILES=$wt"
  timeout 90 .device/vkstats $E/*.wgsl --set BATCHED=0 --set TRANS_A=0 --set TRANS_B=0 --set WHOLE_TILES=$wt --set STREAM_K_FIXUP=0
done 2>&1 | tee $OUT/vkstats.txt
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
case "$GPU" in *H200*)
echo "== H200: cuBLAS, then four members' squares on both APIs, one process per (kernel, API)"
timeout 60 python3 .device/cublas_sgemm.py 1024 1536 2048 3072 4096 8192 | tee $OUT/cublas.jsonl
export TILEGEMM_CACHE=$(mktemp -d)
for api in ocl wgpu; do echo "-- $api"
  for k in rb128x128x8_8x8_g8_p rb128x128x8_8x8_g8_p_streamk264 rb128x64x16_8x4_p rb128x64x16_8x4_p_streamk264; do
    timeout 35 $Y bench --backend $api --device nvidia --kernel $k --sizes 1024,1536,2048,3072,4096,8192 --max-seconds 0.2 --fresh-engine --reference $OUT/cublas.jsonl 2>/dev/null | grep -E "$k " | awk -F'|' '{print $3, $5, $6, $7, $8, $12}' | tr -s ' ' | tee -a $OUT/sq.txt
  done
done
echo "== H200: split-K shapes, cuBLAS then the catalogue's winners on the H100 (fourth command), both APIs"
timeout 60 python3 .device/cublas_sgemm.py 64x64x65536 128x128x16384 96x2048x8192 256x256x8192 | tee $OUT/cublas_splitk.jsonl
for api in ocl wgpu; do echo "-- $api"
  for k in rb64x64x32_4x4_p_kg2_sk128 rb64x64x16_4x4_db_sk128 rb64x64x16_4x4_db_sk64 rb64x64x16_4x4_db_sk16 rb128x64x16_8x4_p_streamk264; do
    timeout 30 $Y bench --backend $api --device nvidia --kernel $k --shapes 64x64x65536,128x128x16384,96x2048x8192,256x256x8192 --max-seconds 0.2 --fresh-engine --reference $OUT/cublas_splitk.jsonl 2>/dev/null | grep -E "$k " | awk -F'|' '{print $3, $5, $6, $7, $8, $12}' | tr -s ' ' | tee -a $OUT/splitk.txt
  done
done
ROUNDS="1 2";;
*) ROUNDS="1 2 3";;
esac
SHAPES=128,160,192,224,256,384,512,768,1024,1536,2048,3072,64x4096x4096,4096x64x4096,128x128x16384,1000x1000x70
cpu_bench() { # binary, shapes
  timeout 120 $1 bench --backend cpu --shapes $2 --max-seconds 0.3 2>/dev/null | grep -E "native" | awk -F'|' '{print $6, $8}' | tr -s ' '
}
blas() { python3 .device/numpy_sgemm.py "$@" | python3 -c "import json,sys; [print(f\"{d['m']}x{d['n']}x{d['k']} {d['gflops']:.0f}\") for d in map(json.loads, sys.stdin)]"; }
for round in $ROUNDS; do echo "== round $round"
  echo "-- openblas"; timeout 90 bash -c "$(declare -f blas); blas ${SHAPES//,/ }"
  for b in $Y $X $M; do echo "-- $b"; cpu_bench $b $SHAPES; done
done | tee $OUT/cpu.txt
echo "== one core (taskset -c 3), OpenBLAS then this build, twice" | tee $OUT/core1.txt
for round in 1 2; do
  echo "-- openblas"; OPENBLAS_NUM_THREADS=1 taskset -c 3 timeout 90 bash -c "$(declare -f blas); blas 256 512 1024 2048"
  echo "-- $Y"; taskset -c 3 timeout 90 $Y bench --backend cpu --sizes 256,512,1024,2048 --max-seconds 0.3 2>/dev/null | grep -E "native" | awk -F'|' '{print $6, $8}' | tr -s ' '
done | tee -a $OUT/core1.txt
echo "== verify this build on 16 threads at odd shapes (shared-out blocks included)"
timeout 90 $Y verify --backend cpu --shapes 160x161x159,1000x1000x70,777x1025x300,4097x65x129,2048x2048x31,3001x2999x65 --trans-a --beta 0.5 --ld-pad 3 2>&1 | tail -2
timeout 60 $Y verify --backend cpu --shapes 300x257x129,1100x1030x40 --batch 7 --trans-b 2>&1 | tail -1
echo "== done"

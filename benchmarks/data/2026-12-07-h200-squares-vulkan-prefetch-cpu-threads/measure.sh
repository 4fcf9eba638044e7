#!/bin/bash
# Command 2 of 2026-12-07 (session 7). (1) What NVIDIA's Vulkan driver offers as internal
# representations of three members (benchmarks/vkstats --ir). (2) The 128×64 member without register
# prefetch (80 registers on Vulkan: three workgroups per SM) against the prefetching one (101: two),
# and the 64×128 member (77), on both APIs, one process per (kernel, API), cuBLAS first. (3) The CPU
# backend's thread threshold: this build (every core from 155³·16/15 multiply-adds, about 158³ on 16
# cores) against the same with 120³ (about 123³), OpenBLAS beside, three rounds.
set -u
T=.device/tilegemm
Z=.device/tilegemm_z120
cd "$(dirname "$0")/.."
exec 2>>$OUT/log.txt
echo "== (1) Vulkan internal representations"
E=$(mktemp -d); timeout 60 $T devices --emit $E >/dev/null 2>&1
mkdir -p $E/ir
timeout 90 .device/vkstats $E/rb128x128x8_8x8_g8_p.wgsl $E/rb128x64x16_8x4_p.wgsl $E/rb128x64x16_8x4.wgsl --set BATCHED=0 --set TRANS_A=0 --set TRANS_B=0 --set WHOLE_TILES=1 --ir $E/ir 2>&1 | tee $OUT/vkstats_ir.txt
ls -la $E/ir | head -20
tar czf $OUT/ir.tar.gz -C $E ir
echo "== (2) squares: cuBLAS, then three members on both APIs"
timeout 60 python3 .device/cublas_sgemm.py 1024 2048 3072 4096 | tee $OUT/cublas.jsonl
export TILEGEMM_CACHE=$(mktemp -d)
for api in wgpu ocl; do echo "-- $api"
  for k in rb128x64x16_8x4 rb128x64x16_8x4_p rb64x128x16_4x8; do
    timeout 35 $T bench --backend $api --device nvidia --kernel $k --sizes 1024,2048,3072,4096 --max-seconds 0.2 --fresh-engine --reference $OUT/cublas.jsonl 2>/dev/null | grep -E "$k " | awk -F'|' '{print $3, $5, $6, $7, $8, $12}' | tr -s ' ' | tee -a $OUT/sq.txt
  done
done
echo "== (3) CPU threads: OpenBLAS, this build (155³), 120³; three rounds"
SHAPES=96,112,128,144,160,176,192,256,512,2048
blas() { python3 .device/numpy_sgemm.py "$@" | python3 -c "import json,sys; [print(f\"{d['m']}x{d['n']}x{d['k']} {d['gflops']:.0f}\") for d in map(json.loads, sys.stdin)]"; }
for round in 1 2 3; do echo "== round $round"
  echo "-- openblas"; timeout 90 bash -c "$(declare -f blas); blas ${SHAPES//,/ }"
  for b in $T $Z; do echo "-- $b"
    timeout 90 $b bench --backend cpu --shapes $SHAPES --max-seconds 0.3 2>/dev/null | grep -E "native" | awk -F'|' '{print $6, $8}' | tr -s ' '
  done
done | tee $OUT/cpu.txt
timeout 60 $T verify --backend cpu --shapes 160x161x159,1000x1000x70,4097x65x129 --trans-a --beta 0.5 --ld-pad 3 2>&1 | tail -1
timeout 60 $T verify --backend cpu --shapes 300x257x129 --batch 7 --trans-b 2>&1 | tail -1
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
case "$GPU" in *H200*)
echo "== H200: cuBLAS, then four members' squares on both APIs, one process per (kernel, API)"
timeout 60 python3 .device/cublas_sgemm.py 1024 1536 2048 4096 8192 | tee $OUT/cublas_h200.jsonl
for api in ocl wgpu; do echo "-- $api"
  for k in rb128x128x8_8x8_g8_p rb128x128x8_8x8_g8_p_streamk264 rb128x64x16_8x4_p rb128x64x16_8x4_p_streamk264; do
    timeout 30 $T bench --backend $api --device nvidia --kernel $k --sizes 1024,1536,2048,4096,8192 --max-seconds 0.2 --fresh-engine --reference $OUT/cublas_h200.jsonl 2>/dev/null | grep -E "$k " | awk -F'|' '{print $3, $5, $6, $7, $8, $12}' | tr -s ' ' | tee -a $OUT/sq_h200.txt
  done
done;;
esac
echo "== done"

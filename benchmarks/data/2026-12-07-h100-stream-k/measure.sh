#!/bin/bash
# One command, cuBLAS (TF32 off) first; most important first (timeouts trim the tail):
# 1. stream-K verified on the GPU, both APIs (odd shapes, Aᵀ, β, padded rows, whole tiles);
# 2. every kernel, both APIs, this build, at squares and at the split-K shapes (full tables);
# 3. whole tiles (the unguarded programs, single and split-K) verified on the GPU, both APIs;
# 4. the CPU backend beside OpenBLAS on this host's cores;
# 5. run A's build (split-K slices guarded) at the split-K shapes; the build before stream-K
#    (family text before k_start/k_end) for two members at squares.
set -u
T=.device/tilegemm
cd "$(dirname "$0")/.."
exec 2>>$OUT/log.txt
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
timeout 40 python3 .device/cublas_sgemm.py 1024 1536 2048 4096 64x64x65536 128x128x16384 96x2048x8192 256x256x8192 | tee $OUT/cublas.jsonl
export TILEGEMM_CACHE=$(mktemp -d)
echo "== 1. verify stream-K on the GPU"
for k in rb128x128x8_8x8_g8_p_streamk132 rb128x128x8_8x8_g8_p_streamk264 rb128x64x16_8x4_p_streamk264 rb64x64x16_4x4_db_streamk264; do
  timeout 25 $T verify --device nvidia --kernel $k --trans-a --beta 0.5 --ld-pad 4 --shapes 1024x1024x1024,255x257x129,33x65x17,64x64x4099,1x1x1 > $OUT/verify.txt 2>&1; echo "$k rc=$?"; grep -E "FAIL|verify:" $OUT/verify.txt
done
echo "== 2. every kernel, this build"
for api in ocl wgpu; do
  timeout 100 $T bench --backend $api --device nvidia --sizes 1024,1536,2048,4096 --max-seconds 0.2 --reference $OUT/cublas.jsonl > $OUT/sq-$api.txt 2>/dev/null
  grep -E "g8_p |g8_p_s|rb128x64x16_8x4_p |rb128x64x16_8x4_p_s|rb64x64x16_4x4_db |db_streamk" $OUT/sq-$api.txt
done
for api in ocl wgpu; do
  timeout 40 $T bench --backend $api --device nvidia --shapes 64x64x65536,128x128x16384,96x2048x8192,256x256x8192 --max-seconds 0.2 --reference $OUT/cublas.jsonl > $OUT/split-$api.txt 2>/dev/null
  grep -E "_sk|_streamk" $OUT/split-$api.txt | awk -F'|' '{print $5 $6 $7 $8 $12}' | tr -s ' '
done
echo "== 3. verify whole tiles on the GPU, both APIs"
timeout 50 $T verify --device nvidia --trans-a --beta 0.5 --ld-pad 4 --shapes 128x128x64,256x128x4096,64x64x65536,33x65x17 > $OUT/verify.txt 2>&1; echo "rc=$?"
grep -cE "^\| ok" $OUT/verify.txt; grep -E "FAIL|verify:" $OUT/verify.txt | head -5
echo "== 4. CPU vs OpenBLAS"
timeout 15 python3 .device/numpy_sgemm.py 256 512 1024
timeout 25 $T bench --backend cpu --sizes 256,512,1024 --max-seconds 0.5 2>/dev/null | grep -E "native"
echo "== 5a. run A's build, split-K shapes"
for api in wgpu ocl; do echo "-- $api"
  timeout 20 .device/tilegemm_a bench --backend $api --device nvidia --shapes 64x64x65536,128x128x16384,96x2048x8192,256x256x8192 --max-seconds 0.2 2>/dev/null | grep -E "_sk" | awk -F'|' '{print $5 $6 $7 $8}' | tr -s ' '
done
echo "== 5b. the build before stream-K, squares"
for api in ocl wgpu; do for k in rb128x128x8_8x8_g8_p rb128x64x16_8x4_p; do
  timeout 12 .device/tilegemm_prev bench --backend $api --device nvidia --kernel $k --sizes 1024,2048,4096 --max-seconds 0.2 --reference $OUT/cublas.jsonl 2>/dev/null | grep -E "$k "
done; done

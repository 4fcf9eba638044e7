#!/bin/bash
# One command, cuBLAS (TF32 off) first; most important first (timeouts trim the tail):
# 1. stream-K after whole waves (v15) verified on the GPU where plain and shared tiles mix;
# 2. four members and their stream-K, one process per (kernel, API), fresh devices per size;
# 3. v15 (this build) against v14 (6dfe7fb) at 3072³ and 4096³, alternating, two rounds;
# 4. the CPU backend (all-or-one threads; the build before: a thread per 160³) beside OpenBLAS, two rounds;
# 5. the split-K shapes, every kernel, both APIs.
set -u
T=.device/tilegemm
P=.device/tilegemm_prev
cd "$(dirname "$0")/.."
exec 2>>$OUT/log.txt
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
timeout 60 python3 .device/cublas_sgemm.py 1024 1536 2048 3072 4096 64x64x65536 128x128x16384 96x2048x8192 256x256x8192 | tee $OUT/cublas.jsonl
export TILEGEMM_CACHE=$(mktemp -d)
echo "== 1. verify v15 stream-K where plain and shared tiles mix"
for k in rb128x128x8_8x8_g8_p_streamk264 rb128x64x16_8x4_p_streamk264; do
  timeout 60 $T verify --device nvidia --kernel $k --trans-a --beta 0.5 --ld-pad 4 --shapes 3072x3072x64,3001x3100x129,4096x4096x32,1000x1000x70 > $OUT/verify.txt 2>&1; echo "$k rc=$?"
  grep -cE "^\| ok" $OUT/verify.txt; grep -E "FAIL|verify:" $OUT/verify.txt | head -4
done
echo "== 2. squares, one process per (kernel, API), --fresh-engine"
for api in ocl wgpu; do echo "-- $api"
  for k in rb128x128x8_8x8_g8_p rb128x128x8_8x8_g8_p_streamk264 rb128x64x16_8x4_p rb128x64x16_8x4_p_streamk264; do
    timeout 40 $T bench --backend $api --device nvidia --kernel $k --sizes 1024,1536,2048,3072,4096 --max-seconds 0.2 --fresh-engine --reference $OUT/cublas.jsonl 2>/dev/null | grep -E "$k " | tee -a $OUT/sq.txt
  done
done
echo "== 3. v15 (this build) vs v14 (6dfe7fb), 3072³ and 4096³, two rounds"
for round in 1 2; do for api in ocl wgpu; do for k in rb128x128x8_8x8_g8_p_streamk264 rb128x64x16_8x4_p_streamk264; do
  for b in $T $P; do echo -n "round $round $api $b: "
    timeout 25 $b bench --backend $api --device nvidia --kernel $k --sizes 3072,4096 --max-seconds 0.2 --fresh-engine --reference $OUT/cublas.jsonl 2>/dev/null | grep -E "$k " | awk -F'|' '{printf "%s|", $0} END {print ""}' | tr -s ' '
  done
done; done; done
echo "== 4. CPU vs OpenBLAS, two rounds"
for round in 1 2; do
  timeout 30 python3 .device/numpy_sgemm.py 192 256 384 512 1024 2048
  for b in $T $P; do echo "-- $b"
    timeout 40 $b bench --backend cpu --sizes 192,256,384,512,1024,2048 --max-seconds 0.5 2>/dev/null | grep -E "native"
  done
done
echo "== 5. split-K shapes, every kernel"
for api in ocl wgpu; do echo "-- $api"
  timeout 60 $T bench --backend $api --device nvidia --shapes 64x64x65536,128x128x16384,96x2048x8192,256x256x8192 --max-seconds 0.2 --reference $OUT/cublas.jsonl > $OUT/split-$api.txt 2>/dev/null
  grep -E "_sk|_streamk" $OUT/split-$api.txt | awk -F'|' '{print $5 $6 $7 $8 $12}' | tr -s ' '
done
echo "== done"

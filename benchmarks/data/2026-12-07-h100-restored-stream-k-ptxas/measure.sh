#!/bin/bash
# Command 1 of 2026-12-07 (session 6), cuBLAS (TF32 off) first; most important first (timeouts trim the tail):
# 1. the restored stream-K (every tile shared, b54dd82's generator) verified on NVIDIA, both APIs;
# 2. ptxas on both stream-K programs and their plain members, this build and 6dfe7fb (v14);
# 3. restored (this build) vs 6dfe7fb, stream-K members, 1024³/1536³/3072³/4096³, one process each;
# 4. the CPU: lscpu, OpenBLAS, this build with rayon's pool at 16 and at 8 threads, two rounds;
# 5. on an H200 only: the four members' squares 1024³–8192³ on both APIs (the H200 was never run with them).
set -u
T=.device/tilegemm
P=.device/tilegemm_prev
cd "$(dirname "$0")/.."
exec 2>>$OUT/log.txt
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
SIZES=1024,1536,2048,3072,4096; case "$GPU" in *H200*) SIZES=1024,1536,2048,3072,4096,8192;; esac
timeout 60 python3 .device/cublas_sgemm.py ${SIZES//,/ } | tee $OUT/cublas.jsonl
export TILEGEMM_CACHE=$(mktemp -d)
echo "== 1. verify the restored stream-K on NVIDIA (plain and shared tiles, Aᵀ, β, padded rows)"
for k in rb128x128x8_8x8_g8_p_streamk264 rb128x64x16_8x4_p_streamk264; do
  timeout 60 $T verify --device nvidia --kernel $k --trans-a --beta 0.5 --ld-pad 4 --shapes 3072x3072x64,3001x3100x129,4096x4096x32,1000x1000x70,777x1025x1500 > $OUT/verify-$k.txt 2>&1; echo "$k rc=$?"
  grep -cE "^\| ok" $OUT/verify-$k.txt; grep -E "FAIL|verify:" $OUT/verify-$k.txt | head -4
done
echo "== 2. ptxas: stream-K programs and their plain members, this build and 6dfe7fb"
KT=$(mktemp -d); KP=$(mktemp -d)
timeout 150 $T devices --emit $KT > /dev/null 2>&1 & timeout 150 $P devices --emit $KP > /dev/null 2>&1 & wait
for b in KT KP; do d=${!b}; for k in rb128x128x8_8x8_g8_p rb128x128x8_8x8_g8_p_streamk264 rb128x64x16_8x4_p rb128x64x16_8x4_p_streamk264 rb128x128x8_8x8_g8_p_sk2; do
  f=$(ls $d/ocl*NVIDIA*/$k.ptx 2>/dev/null | head -1); [ -z "$f" ] && { echo "-- $b $k: no PTX"; continue; }
  tr -d '\000' < $f > /tmp/$b-$k.ptx
  echo "-- $b $k: $(/usr/local/cuda/bin/ptxas -v --gpu-name sm_90 /tmp/$b-$k.ptx -o /tmp/$b-$k.cubin 2>&1 | grep -E 'Used|spill|rror' | tr -s ' ' | tr '\n' ' ')"
done; done | tee $OUT/ptxas.txt
echo "== 3. restored (T) vs 6dfe7fb (P), stream-K members, one process per (build, kernel, API)"
for api in ocl wgpu; do for k in rb128x128x8_8x8_g8_p_streamk264 rb128x64x16_8x4_p_streamk264; do
  for b in $T $P; do echo -n "$api $b: "
    timeout 30 $b bench --backend $api --device nvidia --kernel $k --sizes 1024,1536,3072,4096 --max-seconds 0.2 --fresh-engine --reference $OUT/cublas.jsonl 2>/dev/null | grep -E "$k " | awk -F'|' '{printf "%s|", $0} END {print ""}' | tr -s ' '
  done
done; done | tee $OUT/streamk.txt
echo "== 4. CPU: OpenBLAS, this build (rayon pool 16 and 8), two rounds"
lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket|NUMA node\(s\)|L2|L3"
for round in 1 2; do
  timeout 30 python3 .device/numpy_sgemm.py 192 512 1024 2048
  for n in 16 8; do echo "-- rayon $n"
    RAYON_NUM_THREADS=$n timeout 40 $T bench --backend cpu --sizes 192,512,1024,2048 --max-seconds 0.5 2>/dev/null | grep -E "native"
  done
done | tee $OUT/cpu.txt
case "$GPU" in *H200*)
echo "== 5. H200: the members' squares, both APIs, one process per (kernel, API)"
for api in ocl wgpu; do echo "-- $api"
  for k in rb128x128x8_8x8_g8_p rb128x128x8_8x8_g8_p_streamk264 rb128x64x16_8x4_p rb128x64x16_8x4_p_streamk264; do
    timeout 45 $T bench --backend $api --device nvidia --kernel $k --sizes $SIZES --max-seconds 0.2 --fresh-engine --reference $OUT/cublas.jsonl 2>/dev/null | grep -E "$k " | tee -a $OUT/sq.txt
  done
done;;
esac
echo "== done"

#!/bin/bash
# One command, cuBLAS beside:
# 1. WGSL, alternating, 2 rounds: the build before the batch prelude (e6236f7), the BATCHED
#    specialisation (3042941, "head"), and this build (unguarded whole tiles, "now");
# 2. OpenCL: head vs now;
# 3. K groups (kg2 members), both APIs, this build;
# 4. split-K shapes, both APIs, this build (new: split members on the double-buffered and the kg2 64×64 tiles);
# 5. ptxas on NVIDIA OpenCL's PTX: its full output first (why it was refused), then registers/spills.
set -u
T=.device/tilegemm
cd "$(dirname "$0")/.."
exec 2>>$OUT/log.txt
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
timeout 60 python3 .device/cublas_sgemm.py 1024 2048 4096 8192 64x64x65536 128x128x16384 96x2048x8192 256x256x8192 | tee $OUT/cublas.jsonl
row() { echo "$1 $2 $3 $4 $(timeout 60 $2 bench --backend $1 --device nvidia --kernel $3 --sizes $4 --max-seconds 0.5 2>/dev/null | grep NVIDIA | awk -F'|' '{print $6 $8}' | tr -s ' ' | tr '\n' ';')"; }
echo "== 1. WGSL (api bin kernel sizes: shape GFLOPS;...)"
for round in 1 2; do for bin in .device/tilegemm_prebatch .device/tilegemm_head $T; do
  for k in rb128x64x16_8x4_p rb128x128x8_8x8_g8_p; do row wgpu $bin $k 1024,2048,4096,8192; done
done; done | tee $OUT/wgsl.txt
echo "== 2. OpenCL, head vs now"
for round in 1 2; do for bin in .device/tilegemm_head $T; do
  for k in rb128x64x16_8x4_p rb128x128x8_8x8_g8_p; do row ocl $bin $k 1024,2048,4096,8192; done
done; done | tee $OUT/ocl.txt
echo "== 3. K groups, this build"
for api in wgpu ocl; do for k in rb128x64x32_8x4_p_kg2 rb64x64x32_4x4_p_kg2; do row $api $T $k 1024,1400,2048,4096; done; done | tee $OUT/kg2.txt
echo "== 4. split-K shapes, this build (api: kernel shape ms GFLOPS)"
for api in wgpu ocl; do echo "-- $api"
  timeout 120 $T bench --backend $api --device nvidia --shapes 64x64x65536,128x128x16384,96x2048x8192,256x256x8192 --max-seconds 0.3 2>/dev/null | grep -E "_sk" | awk -F'|' '{print $5 $6 $7 $8}' | tr -s ' '
done | tee $OUT/splitk.txt
echo "== 5. ptxas on NVIDIA OpenCL's PTX"
K=$(mktemp -d); timeout 150 $T devices --emit $K > /dev/null 2>&1
ls $K; f=$(ls $K/ocl*NVIDIA*/rb128x64x16_8x4_p.ptx 2>/dev/null | head -1)
{
echo "-- PTX file: $f ($(wc -c < $f) bytes)"; head -c 400 $f | od -c | head -14; echo ...; tail -c 200 $f | od -c | tail -8
/usr/local/cuda/bin/ptxas --version | tail -2
echo "-- ptxas, full output:"; /usr/local/cuda/bin/ptxas -v --gpu-name sm_90 $f -o /tmp/x.cubin 2>&1 | head -30
tr -d '\000' < $f > /tmp/clean.ptx; echo "-- without NULs:"; /usr/local/cuda/bin/ptxas -v --gpu-name sm_90 /tmp/clean.ptx -o /tmp/x.cubin 2>&1 | head -20
grep -m3 -E "^\.(version|target|address_size)" /tmp/clean.ptx
} > $OUT/ptxas-debug.txt 2>&1; cat $OUT/ptxas-debug.txt | head -80
for k in tile16 tile24 rb64x64x16_4x4 rb64x64x16_4x4_db rb128x64x16_8x4_p rb128x64x32_8x4_p_kg2 rb64x64x32_4x4_p_kg2 rb128x128x8_8x8_p rb128x128x8_8x8_g8_p rb128x128x16_8x8 rb64x128x16_4x8 rb128x128x8_8x8_db; do
  f=$(ls $K/ocl*NVIDIA*/$k.ptx 2>/dev/null | head -1); [ -z "$f" ] && { echo "-- $k: no PTX"; continue; }
  tr -d '\000' < $f > /tmp/$k.ptx
  echo "-- $k: $(/usr/local/cuda/bin/ptxas -v --gpu-name sm_90 /tmp/$k.ptx -o /tmp/$k.cubin 2>&1 | grep -E 'Used|spill|rror|arning' | tr -s ' ' | tr '\n' ' ')"
  echo "   SASS: $(/usr/local/cuda/bin/cuobjdump -sass /tmp/$k.cubin 2>&1 | grep -oE '(FFMA|LDS[.A-Z0-9]*|LDG[.A-Z0-9]*|STS[.A-Z0-9]*|BAR[.A-Z]*|STL[.A-Z0-9]*|LDL[.A-Z0-9]*)' | sort | uniq -c | tr -s ' ' | tr '\n' ' ')"
done | tee $OUT/ptxas.txt
/usr/local/cuda/bin/cuobjdump -sass /tmp/rb128x128x8_8x8_g8_p.cubin > $OUT/cl-sass-g8_p.txt 2>&1

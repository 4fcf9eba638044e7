#!/bin/bash
# Second command, most important first: many-slice split-K beside cuBLAS; resident chains with
# recorded submissions and batches beside torch.bmm; verify on NVIDIA; squares to 8192; ptxas;
# CPU threads; the old binary's selection.
set -u
T=.device/tilegemm
cd "$(dirname "$0")/.."
exec 2>>$OUT/log.txt
timeout 40 python3 .device/cublas_sgemm.py 64x64x65536 128x128x16384 96x2048x8192 256x256x8192 2048 8192 | tee $OUT/cublas.jsonl
echo "== WGSL regression check: before the batch prelude (e6236f7) vs now, alternating, 2 rounds"
for round in 1 2; do for bin in .device/tilegemm_prebatch $T; do
  for k in rb128x64x16_8x4_p rb128x128x8_8x8_g8_p; do echo "$bin $(timeout 30 $bin bench --backend wgpu --device nvidia --kernel $k --sizes 1024,4096 --max-seconds 1 2>/dev/null | grep NVIDIA | awk -F'|' '{print $5 $6 $8}' | tr -s ' ' | tr '\n' ';')"; done
done; done
echo "== split-K members (wgpu, then ocl)"
for api in wgpu ocl; do
  timeout 60 $T bench --backend $api --device nvidia --shapes 64x64x65536,128x128x16384,96x2048x8192,256x256x8192 --max-seconds 0.5 2>/dev/null | grep -E "_sk|tile16 "
done
echo "== resident chains of 20 (GEMMs recorded 64 to a submission)"
timeout 40 $T bench --backend wgpu --device nvidia --kernel rb128x64x16_8x4_p --sizes 1024,2048,4096 --chain 20 --max-seconds 1 | grep -E "NVIDIA"
for case in 512:64 64:256 8:1024; do b=${case%%:*}; s=${case##*:}
  for k in rb64x64x16_4x4 rb64x128x16_4x8; do
    timeout 30 $T bench --backend wgpu --device nvidia --kernel $k --batch $b --shapes $s --chain 20 --max-seconds 1 | grep -E "NVIDIA"
  done
done
timeout 40 python3 .device/torch_bmm.py 512x64x64x64 64x256x256x256 8x1024x1024x1024 | tee $OUT/torch_bmm.jsonl
echo "== verify every kernel of both APIs on the GPU"
for opts in "" "--trans-a --alpha 0.5 --beta 2 --ld-pad 3" "--trans-b --batch 3 --beta 1" "--trans-a --trans-b --batch 5 --ld-pad 1 --shapes 1x1x1,7x13x5,33x65x17,129x65x1000,64x64x4099"; do
  echo "-- verify $opts"; timeout 60 $T verify --device nvidia $opts 2>&1 | grep -vE "^\| ok" | grep -E "^verify:|^\|" | grep -v -- "---" | head -6
done
echo "== best kernels, both APIs, 2048 and 8192"
for api in wgpu ocl; do
  for k in rb128x128x8_8x8_g8_p rb128x128x16_8x8 rb128x64x16_8x4_p; do
    timeout 40 $T bench --backend $api --device nvidia --kernel $k --sizes 2048,8192 --max-seconds 1 | grep -E "NVIDIA"
  done
done
echo "== ptxas -v"
K=$(mktemp -d); timeout 60 $T devices --emit $K >/dev/null 2>&1
P=$(ls $K/ocl*NVIDIA*/*.ptx | head -1); /usr/local/cuda/bin/ptxas -v --gpu-name sm_90 $P -o /dev/null 2>&1 | head -6
for f in $K/ocl*NVIDIA*/*.ptx; do echo "-- $(basename $f .ptx): $(/usr/local/cuda/bin/ptxas -v --gpu-name sm_90 $f -o /dev/null 2>&1 | grep -E 'Used|spill' | tr -s ' ' | tr '\n' ' ')"; done
echo "== CPU threads (gemm crate, Rayon(n))"
timeout 30 .device/cpuexp
echo "== selection, old binary (calibration v1) then new, fresh caches"
for bin in .device/tilegemm_old $T; do export TILEGEMM_CACHE=$(mktemp -d); echo "-- $bin"
  for s in 64x64x65536 128x128x16384 96x2048x8192 256x256x8192; do timeout 30 $bin select $s 2>&1 | sed -n '1p'; done
done

#!/bin/bash
# One command on the GPU machine: WGSL and OpenCL families, split-K against cuBLAS, strided batches
# (host slices and resident chains) against torch.bmm. Logs in $OUT/log.txt.
set -u
T=.device/tilegemm
cd "$(dirname "$0")/.."
exec 2>>$OUT/log.txt
$T devices 2>&1 | grep -iE "nvidia|device" | head -8
echo "== WGSL family (wgpu), square"
timeout 150 $T bench --backend wgpu --device nvidia --sizes 1024,4096 --max-seconds 1 --json $OUT/wgsl.json | grep -E "NVIDIA|kernel"
echo "== OpenCL family (NVIDIA OpenCL), square"
timeout 150 $T bench --backend ocl --device nvidia --sizes 1024,4096 --max-seconds 1 --json $OUT/ocl.json | grep -E "NVIDIA|kernel"
timeout 60 python3 .device/cublas_sgemm.py 1024 4096 64x64x65536 128x128x16384 96x2048x8192 256x256x8192 | tee $OUT/cublas.jsonl
echo "== split-K shapes (wgpu)"
timeout 100 $T bench --backend wgpu --device nvidia --shapes 64x64x65536,128x128x16384,96x2048x8192,256x256x8192 --max-seconds 1 --json $OUT/splitk.json | grep -E "NVIDIA|kernel"
echo "== batched"
for case in 512:64 64:256 8:1024; do
  b=${case%%:*}; s=${case##*:}
  timeout 50 $T bench --backend wgpu --device nvidia --batch $b --shapes $s --chain 20 --max-seconds 1 | grep -E "NVIDIA|kernel"
done
timeout 60 python3 .device/torch_bmm.py 512x64x64x64 64x256x256x256 8x1024x1024x1024 | tee $OUT/torch_bmm.jsonl
echo "== resident chain of 20 at 2048/4096 (wgpu, best kernel), one read-back into a reused host buffer"
timeout 60 $T bench --backend wgpu --device nvidia --kernel rb128x64x16_8x4_p --sizes 1024,2048,4096 --chain 20 --max-seconds 1 | grep -E "NVIDIA|kernel"
echo "== CPU vs OpenBLAS on this host"
timeout 60 python3 .device/numpy_sgemm.py 96 128 256 384 512 1024 2048 4096 
timeout 90 $T bench --backend cpu --sizes 96,128,256,384,512,1024,2048,4096 --reps 50 --max-seconds 2 | grep -E "native"
echo "== selector on a fresh cache (calibrated prior with waves; the shipped model), split-K shapes"
export TILEGEMM_CACHE=$(mktemp -d)
for s in 64x64x65536 128x128x16384 96x2048x8192 256x256x8192 1024; do timeout 60 $T select $s 2>&1 | head -6; done
cat $TILEGEMM_CACHE/*NVIDIA*.calibration.json > $OUT/calibrations.json
echo "== ptxas -v of NVIDIA OpenCL's PTX (registers, spills), sm_90"
K=$(mktemp -d); timeout 150 $T devices --emit $K >/dev/null 2>&1
for f in $K/ocl*NVIDIA*/*.ptx; do echo "-- $(basename $f .ptx)"; /usr/local/cuda/bin/ptxas -v --gpu-name sm_90 $f -o /dev/null 2>&1 | grep -E "Used|spill" | sed 's/ptxas info *: //'; done

python3 .device/cublas_sgemm.py 1024 1400 2048 4096 8192 > $OUT/cublas_fresh.jsonl
mkdir -p /tmp/fresh
for s in 1024 1400 2048 4096 8192; do for k in tile24 rb128x128x8_8x8 rb128x128x16_8x8 rb128x64x16_8x4 rb64x128x16_4x8 rb64x64x16_4x4 rb128x128x8_8x8_p rb128x128x8_8x8_g8_p rb128x128x8_8x8_db rb64x64x16_4x4_db; do
  .device/tilegemm bench --backend wgpu --kernel $k --sizes $s --max-seconds 1 --json /tmp/fresh/$k-$s.json > /dev/null 2>&1
done; done
python3 -c "
import json,glob
ms=[m for f in sorted(glob.glob('/tmp/fresh/*.json')) for m in json.load(open(f))]
ms.sort(key=lambda m:(m['m'],m['kernel']))
json.dump(ms,open('$OUT/bench_fresh.json','w'),indent=2)
ref={json.loads(l)['m']:json.loads(l)['gflops'] for l in open('$OUT/cublas_fresh.jsonl') if l.startswith('{')}
for m in ms: print(m['kernel'],m['m'],round(m['gflops']),round(100*m['gflops']/ref[m['m']],1))
"

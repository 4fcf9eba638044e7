#!/usr/bin/env python3
"""What NVIDIA's Vulkan driver compiled: carve ELF images out of each kernel's pipeline cache
(`tilegemm devices --emit DIR`), then registers/spills (cuobjdump -res-usage) and an instruction
count of the SASS (nvdisasm). Usage: vkcache.py DIR OUTDIR"""
import glob, os, re, struct, subprocess, sys
from collections import Counter

CUDA = "/usr/local/cuda/bin"
emit, out = sys.argv[1], sys.argv[2]
files = sorted(glob.glob(f"{emit}/wgpu*NVIDIA*/*.bin")) or sorted(glob.glob(f"{emit}/wgpu*/*.bin"))
print(f"{len(files)} pipeline caches")
for path in files:
    name = os.path.basename(path)[:-4]
    data = open(path, "rb").read()
    elves, at = [], data.find(b"\x7fELF")
    while at >= 0:
        elves.append(at)
        at = data.find(b"\x7fELF", at + 4)
    line = f"-- {name}: {len(data)} bytes, ELF at {elves[:4]}"
    if not elves:
        print(line, "| head:", data[:64].hex(), "| strings:", re.findall(rb"[ -~]{6,}", data)[:8])
        continue
    for i, start in enumerate(elves[:2]):
        shoff, = struct.unpack_from("<Q", data, start + 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, start + 0x3A)
        end = start + shoff + shentsize * shnum
        image = f"/tmp/{name}.{i}.cubin"
        open(image, "wb").write(data[start:end])
        res = subprocess.run([f"{CUDA}/cuobjdump", "-res-usage", image], capture_output=True, text=True)
        usage = " ".join(l.strip() for l in (res.stdout + res.stderr).splitlines() if "REG" in l or "rror" in l)
        sass = subprocess.run([f"{CUDA}/nvdisasm", "-c", image], capture_output=True, text=True)
        ops = Counter(m.group(1) for m in re.finditer(r"\b(FFMA|LDS(?:\.\w+)*|LDG(?:\.\w+)*|STS(?:\.\w+)*|BAR(?:\.\w+)*|BRA|STL(?:\.\w+)*|LDL(?:\.\w+)*)\b", sass.stdout))
        line += f" | [{i}] {usage} | SASS {dict(ops) or sass.stderr.strip()[:200]}"
        if name in ("rb128x64x16_8x4_p", "rb128x128x8_8x8_g8_p") and i == 0:
            open(f"{out}/vk-sass-{name}.txt", "w").write(sass.stdout)
    print(line)

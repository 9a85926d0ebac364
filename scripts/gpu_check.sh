#!/usr/bin/env bash
# The GPU checks, in one run of at most about 9 minutes: the GPU benchmark, the GPU-only tests, the demo
# on CUDA and, when open_clip is there, CLIP-ES's speed. Results go to ${OUT:-gpu_check}/ (bench_gpu.json,
# tests.txt, demo.txt, bench_clip_es.json, env.txt).
#   OUT=folder bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check}"
mkdir -p "$out"
# the machine has torch, timm, OpenCV and sentence-transformers; tedloc runs from the tree (the box
# kernel falls back to OpenCV where its C extension is not built); missing wheels must be carried
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import tedloc, safetensors, yaml, tqdm, scipy" > "$out/imports.txt" 2>&1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'timm', timm.__version__)"
  date -u
} > "$out/env.txt" 2>&1
timeout 250 python3 scripts/bench_gpu.py --json "$out/bench_gpu.json" > "$out/bench_gpu.txt" 2>&1
echo "bench_gpu exit $?" >> "$out/bench_gpu.txt"
timeout 130 python3 -m pytest -q tests/test_gpu.py > "$out/tests.txt" 2>&1
echo "tests exit $?" >> "$out/tests.txt"
( time timeout 170 python3 -m tedloc demo --out "$out/demo" --device cuda --no-video ) > "$out/demo.txt" 2>&1
echo "demo exit $?" >> "$out/demo.txt"
if python3 -c "import open_clip" 2> /dev/null; then  # open_clip (+ ftfy, regex) are not on the machine: carry them
  timeout 45 python3 scripts/bench_clip_es.py --device cuda --images 128 --batch-sizes 1 32 128 --models ViT-B-16-quickgelu \
    --repeats 2 --json "$out/bench_clip_es.json" > "$out/bench_clip_es.txt" 2>&1
  echo "bench_clip_es exit $?" >> "$out/bench_clip_es.txt"
fi
cp "$out/demo/report.md" "$out/demo_report.md" 2>/dev/null || true
rm -rf "$out/demo"
tail -n 3 "$out"/*.txt

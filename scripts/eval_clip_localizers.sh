#!/usr/bin/env bash
# The paper's training-free rows on one dataset: CLIP-ES (GT), CLIP-ES (Pred), CLIP, SCLIP, NACLIP.
#   scripts/eval_clip_localizers.sh DATA OUT [tedloc evaluate options...]
# e.g. scripts/eval_clip_localizers.sh data/cub results/cub --device cuda --batch-size 64
#      scripts/eval_clip_localizers.sh data/tin results/tin --clip-pretrained random --input-size 64
# Writes OUT/<name>.json and OUT/table.md (MaxBoxAcc, MaxBoxAccV2, Top-1 Loc, GT-known Loc, CL@1).
set -euo pipefail
data=$1; out=$2; shift 2
extra=("$@")
mkdir -p "$out"
for spec in "clip-es-gt clip-es true" "clip-es-pred clip-es pred" "clip clip pred" "sclip sclip pred" \
            "naclip naclip pred"; do
  read -r name method cls <<< "$spec"
  [ -s "$out/$name.json" ] || tedloc evaluate --method "$method" --map-class "$cls" --data "$data" --split test \
    --json "$out/$name.json" ${extra[@]+"${extra[@]}"} > /dev/null  # a finished row is kept: the script resumes
done
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = ["| localizer | map class | MaxBoxAcc | MaxBoxAccV2 | Top-1 Loc | GT-known Loc | CL@1 |", "|---|---|---|---|---|---|---|"]
for name in ("clip-es-gt", "clip-es-pred", "clip", "sclip", "naclip"):
    m = json.loads((out / f"{name}.json").read_text())
    rows.append(f"| {m['map']} | {m['map_class']} | {m['MaxBoxAcc']:.2f} | {m['MaxBoxAccV2']:.2f} | {m['Top1Loc']:.2f} "
                f"| {m['GTKnownLoc']:.2f} | {m['CL@1']:.2f} |")
(out / "table.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
PY

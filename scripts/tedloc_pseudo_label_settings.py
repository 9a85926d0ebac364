"""TeD-Loc's pseudo-label settings on the demo's data: the source of the maps (the CNN's CAM or Grad-CAM), the
FG / BG pools, the boundary prior and rounds of self-training, each a TeD-Loc run on the demo's CAM run, anchors and
feature cache (its finished steps reused).

    python scripts/tedloc_pseudo_label_settings.py --demo runs/demo --out runs/tedloc_settings [--device cpu]

Prints, per setting (and per round of a setting with rounds: round r > 1 learns from round r - 1's own maps of the
train split, as the recipes' ``tedloc_rounds``), the best val MaxBoxAcc of the run (GT boxes of val: what chose the
demo's setting and its number of rounds) and its test metrics; writes OUT/settings.json. The settings are the demo
preset's TeD-Loc config with the changes below.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from tedloc.methods.run_maps import compute_run_map_cache
from tedloc.recipes.pipeline import evaluate_on_test, round_run, tedloc_round
from tedloc.recipes.presets import get_preset
from tedloc.utils.device import Runtime
from tedloc.utils.io import atomic_write_text

# name -> (pseudo-label maps, TeD-Loc config changes, rounds)
_NO_PRIOR = {"bg_border": 0.0}
SETTINGS = {
    "cam_pools_0.2_0.2": ("cam", {"fg_pool": 0.2, "bg_pool": 0.2, **_NO_PRIOR}, 1),
    "cam_pools_0.6_0.1": ("cam", {"fg_pool": 0.6, "bg_pool": 0.1, **_NO_PRIOR}, 1),
    "cam_pools_0.6_0.1_k50": ("cam", {"fg_pool": 0.6, "bg_pool": 0.1, "k": 50, **_NO_PRIOR}, 1),
    "cam_pools_1.0_0.05": ("cam", {"fg_pool": 1.0, "bg_pool": 0.05, **_NO_PRIOR}, 1),
    "gradcam_pools_0.2_0.2": ("gradcam", {"fg_pool": 0.2, "bg_pool": 0.2, **_NO_PRIOR}, 1),
    "gradcam_pools_1.0_0.05": ("gradcam", {"fg_pool": 1.0, "bg_pool": 0.05, **_NO_PRIOR}, 2),
    "gradcam_border_0.125": ("gradcam", {"fg_pool": 1.0, "bg_pool": 1.0, "bg_border": 0.125}, 5),
    # a diagnostic, not a method: the GT masks of the train split as the maps (is the frozen encoder the limit?)
    "gt_masks": ("gt-masks", {"fg_pool": 1.0, "bg_pool": 1.0, **_NO_PRIOR}, 1),
}
SHOWN = ("MaxBoxAcc", "MaxBoxAccV2", "PxAP", "CL@1", "Top1Loc@val_thr", "error/LPE", "error/LME", "error/other")


def gt_mask_cache(data: Path, out: Path, size: int) -> None:
    """The train split's GT masks (their union per image), area-resized to ``size`` x ``size``, as a map cache."""
    import cv2
    import numpy as np
    from PIL import Image

    from tedloc.data import load_dataset
    from tedloc.pseudolabels.map_cache import MapCache

    split = load_dataset(data)["train"]
    cache = MapCache(out, split.image_ids, (size, size), {"run": "", "method": "gt-masks", "classes": "true"})
    if len(cache.missing()) == 0:
        return
    maps = []
    for i in range(len(split)):
        w, h = (int(v) for v in split.sizes[i])
        mask = np.zeros((h, w), np.float32)
        for name in split.mask_paths[i]:
            mask = np.maximum(mask, (np.asarray(Image.open(split.mask_root / name)) > 0).astype(np.float32))
        maps.append(cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA))
    cache.write(np.arange(len(split)), maps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", required=True, help="a finished `tedloc demo --out` folder")
    parser.add_argument("--out", required=True, help="folder of the runs, their evaluations and settings.json")
    parser.add_argument("--settings", nargs="*", choices=sorted(SETTINGS), help="default: all")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    demo, out = Path(args.demo), Path(args.out)
    runtime = Runtime.create(args.device)
    recipe = get_preset("demo")
    data, cam_run = demo / "data", demo / "runs" / "cam"
    base = dataclasses.replace(recipe.tedloc, feature_cache=str((demo / "cache" / "features").resolve()),
                               encoder=recipe.pretrain.arch, encoder_run=str(cam_run.resolve()),
                               input_size=recipe.pretrain.input_size)
    done = out / "settings.json"  # rows of earlier calls (other --settings) are kept, while SETTINGS makes them
    rows = {round_run(out, name, r, n).name for name, (_, _, n) in SETTINGS.items() for r in range(1, n + 1)}
    table = {k: v for k, v in json.loads(done.read_text()).items() if k in rows} if done.exists() else {}
    for name in args.settings or SETTINGS:
        source, changes, rounds = SETTINGS[name]
        maps = out / "cache" / f"{source}_train"
        if source == "gt-masks":
            gt_mask_cache(data, maps, recipe.pretrain.input_size // 4)
        else:
            compute_run_map_cache(cam_run, data, "train", maps, method=source, batch_size=recipe.eval_batch_size,
                                  runtime=runtime)
        config = dataclasses.replace(base, **changes)
        for r in range(1, rounds + 1):  # the last round in runs/<name>, as the recipes' (tedloc_round)
            run, maps = tedloc_round(data, out, name, r, rounds, config, demo / "anchors" / "orthogonal.safetensors",
                                     maps, runtime, recipe.eval_batch_size)
            history = json.loads((run / "model.json").read_text())["history"]
            metrics = evaluate_on_test(run, data, out, recipe, runtime)
            table[run.name] = {"val_MaxBoxAcc": max(e["val_MaxBoxAcc"] for e in history),
                               **{k: round(metrics[k], 2) for k in SHOWN if k in metrics}}
            print(run.name, json.dumps(table[run.name]), flush=True)
    atomic_write_text(done, json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()

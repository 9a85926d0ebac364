"""DiPS's ablations on the synthetic benchmark: the demo's recipe with every DiPS variant (with and without the
CRF loss, K = 1, the mean attention map only), in the demo's folder so that its finished steps are reused.

    python scripts/dips_ablations.py --out runs/demo [--device cpu]

Writes OUT/report.md and OUT/results.json (the demo's rows plus one row per variant) and OUT/proposals.json.
With ``--oracle``, also DiPS trained on the train split's GT boxes as its proposals (one per image, the mean
attention map as its activation map): what the rest of the method reaches with perfect proposals, written
to OUT/eval/dips_gt_proposals[_N_epochs].json (``--oracle-epochs N``: N decoder epochs, LR decayed after 2/3). With ``--attention-mass``, the share of each attention map's mass inside
the GT box on every 10th train image (how much the ViT's attention says about the object), printed and
written to OUT/eval/attention_mass.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from tedloc.data import SyntheticConfig, load_dataset, make_synthetic
from tedloc.pseudolabels.proposal_cache import ProposalCache
from tedloc.pseudolabels.proposals import Proposal
from tedloc.recipes import run_recipe
from tedloc.recipes.pipeline import DIPS_VARIANTS
from tedloc.recipes.presets import get_preset
from tedloc.utils.device import Runtime


def main() -> None:
    """Run the demo recipe with all DiPS variants."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--oracle", action="store_true", help="also DiPS with the GT boxes as its proposals")
    parser.add_argument("--oracle-epochs", type=int, help="the oracle's decoder epochs (default: the recipe's)")
    parser.add_argument("--attention-mass", action="store_true",
                        help="the share of each attention map's mass inside the GT box (train split)")
    args = parser.parse_args()
    out = Path(args.out)
    start = time.perf_counter()
    data = make_synthetic(out / "data", SyntheticConfig(seed=args.seed))
    recipe = get_preset("demo")
    recipe.pretrain.seed = recipe.tedloc.seed = recipe.vit.seed = recipe.dips.seed = args.seed
    recipe.dips_variants = tuple(DIPS_VARIANTS.names())
    runtime = Runtime.create(args.device)
    run_recipe(data, out, recipe, log=lambda text: print(text, flush=True), runtime=runtime)
    if args.oracle:
        print(json.dumps(_gt_proposals(data, out, recipe, runtime, args.oracle_epochs), indent=1))
    if args.attention_mass:
        print(json.dumps(_attention_mass(data, out, recipe), indent=1))
    print(f"finished in {time.perf_counter() - start:.0f} s; report: {out / 'report.md'}")


def _attention_mass(data: Path, out: Path, recipe) -> dict:
    """Per map of the set (the mean, then heads 0-3): its mass inside the first GT box over its total, averaged
    over every 10th train image; and the GT boxes' mean share of the image (what uniform maps would give)."""
    import torch
    import torch.nn.functional as F

    from tedloc.data.images import load_image
    from tedloc.methods.base import load_encoder
    from tedloc.models.vit_attention import cls_attention_maps
    from tedloc.pseudolabels.proposals import attention_map_set
    from tedloc.utils.io import atomic_write_text

    train = load_dataset(data)["train"]
    vit = load_encoder(recipe.vit.arch, recipe.vit.input_size, run=out / "runs" / "vit")
    rows = list(range(0, len(train), 10))
    inside, area = [], []
    for i in rows:
        image = load_image(train.image_path(i))
        with torch.no_grad():
            maps = attention_map_set(cls_attention_maps(vit.model, vit.preprocessing.eval_input(image)[None]))
        w, h = image.size
        maps = F.interpolate(maps, size=(h, w), mode="bilinear", align_corners=False)[0].clamp_min(0)
        x0, y0, x1, y1 = (int(v) for v in np.asarray(train.boxes[i]).reshape(-1, 4)[0])
        inside.append((maps[:, y0:y1 + 1, x0:x1 + 1].sum(dim=(1, 2)) / maps.sum(dim=(1, 2)).clamp_min(1e-12)).numpy())
        area.append((x1 - x0 + 1) * (y1 - y0 + 1) / (w * h))
    result = {"images": len(rows), "GT box share of the image": float(np.mean(area)),
              "mass inside the GT box": dict(zip(["mean"] + [f"head {h}" for h in (0, 1, 2, 3)],
                                                 np.mean(inside, axis=0).round(4).tolist()))}
    atomic_write_text(out / "eval" / "attention_mass.json", json.dumps(result, indent=1) + "\n")
    return result


def _gt_proposals(data: Path, out: Path, recipe, runtime: Runtime, epochs: int | None = None) -> dict:
    """DiPS on GT boxes as proposals (the recipe's ViT and settings otherwise); its test metrics."""
    from tedloc.eval.localizer_eval import evaluate_localizer
    from tedloc.methods import get_method, load_model
    from tedloc.utils.io import atomic_write_text

    train = load_dataset(data)["train"]
    real = ProposalCache(out / "cache" / "proposals_h0-1-2-3")
    cache = ProposalCache(out / "cache" / "proposals_gt", train.image_ids, 1,
                          {**real.settings, "oracle": "the GT boxes of the train split"})
    if not cache.complete:
        rows = list(range(len(train)))
        boxes = [[Proposal(tuple(int(v) for v in np.asarray(train.boxes[i]).reshape(-1, 4)[0]), 0)] for i in rows]
        cache.write(rows, boxes, [np.ones(1, dtype=np.float32)] * len(rows))
    config = dataclasses.replace(recipe.dips, encoder=recipe.vit.arch, input_size=recipe.vit.input_size, top_k=1,
                                 encoder_run=str((out / "runs" / "vit").resolve()),
                                 classifier_dir=str((out / "runs" / "dips_classifier").resolve()))
    name = "dips_gt_proposals" + (f"_{epochs}_epochs" if epochs else "")
    if epochs:
        config = dataclasses.replace(config, epochs=epochs, lr_step=max(1, epochs * 2 // 3))
    run = out / "runs" / name
    get_method("dips").train(data, run, config, runtime=runtime, proposals=out / "cache" / "proposals_gt")
    metrics = evaluate_localizer(load_model(run, runtime=runtime), load_dataset(data)["test"], "validation",
                                 batch_size=100)  # thresholds every 0.01, as the ablation table was measured
    metrics = {k: v for k, v in metrics.items() if k != "curves"}
    atomic_write_text(out / "eval" / f"{name}.json", json.dumps(metrics, indent=1) + "\n")
    return metrics


if __name__ == "__main__":
    main()

"""DiPS's ablations on the synthetic benchmark: the demo's recipe with every DiPS variant (with and without the
CRF loss, K = 1, the mean attention map only), in the demo's folder so that its finished steps are reused.

    python scripts/dips_ablations.py --out runs/demo [--device cpu]

Writes OUT/report.md and OUT/results.json (the demo's rows plus one row per variant) and OUT/proposals.json.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from tedloc.data import SyntheticConfig, make_synthetic
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
    args = parser.parse_args()
    out = Path(args.out)
    start = time.perf_counter()
    data = make_synthetic(out / "data", SyntheticConfig(seed=args.seed))
    recipe = get_preset("demo")
    recipe.pretrain.seed = recipe.tedloc.seed = recipe.vit.seed = recipe.dips.seed = args.seed
    recipe.dips_variants = tuple(DIPS_VARIANTS.names())
    run_recipe(data, out, recipe, log=lambda text: print(text, flush=True), runtime=Runtime.create(args.device))
    print(f"finished in {time.perf_counter() - start:.0f} s; report: {out / 'report.md'}")


if __name__ == "__main__":
    main()

"""End-to-end recipes: the pipeline behind ``tedloc demo`` and ``tedloc bench``, and their presets."""
from tedloc.recipes.pipeline import VARIANTS, Recipe, Variant, results_table, run_recipe

__all__ = ["Recipe", "Variant", "VARIANTS", "run_recipe", "results_table"]

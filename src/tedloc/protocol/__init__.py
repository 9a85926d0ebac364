"""The realistic evaluation protocol (thesis ch. 4): pseudo-boxes instead of GT boxes on validation,
for model selection and the map threshold; the selection table; the noisy-box study."""
from tedloc.protocol.box_files import read_box_file, score_boxes, write_box_file
from tedloc.protocol.noise import NOISE_LEVELS, noisy_split, perturb_boxes

__all__ = ["read_box_file", "write_box_file", "score_boxes", "NOISE_LEVELS", "perturb_boxes", "noisy_split"]

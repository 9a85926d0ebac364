"""NL-CCAM (Yang et al., WACV 2020, "Combinational Class Activation Maps for Weakly Supervised Object
Localization"): a CNN classifier with non-local blocks after its feature stages, whose map combines the CAMs of all
classes weighted by their rank. ``tedloc train --method nlccam``."""
from tedloc.methods.cam.localizer import classifier_reference
from tedloc.methods.nlccam.combination import COMBINATIONS, combinational_cams, rank_weights
from tedloc.methods.nlccam.localizer import NLCCAMLocalizer
from tedloc.methods.nlccam.network import NonLocalBlock, build_nlccam_classifier, insert_nonlocal_blocks
from tedloc.methods.nlccam.train import RUN_KIND, NLCCAMConfig, build_nlccam_network, train
from tedloc.methods.registry import Method, register_method

__all__ = ["NLCCAMConfig", "NLCCAMLocalizer", "NonLocalBlock", "insert_nonlocal_blocks", "build_nlccam_classifier",
           "combinational_cams", "rank_weights", "COMBINATIONS", "METHOD"]

METHOD = register_method(Method(
    name="nlccam",
    description="NL-CCAM: a CNN classifier with non-local blocks; the CAMs of all classes combined by their rank "
                "localize",
    run_kind=RUN_KIND,
    config=NLCCAMConfig,
    train=train,
    build=build_nlccam_network,
    localizer=NLCCAMLocalizer,
    reference_preprocessing=classifier_reference,
))

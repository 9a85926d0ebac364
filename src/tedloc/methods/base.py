"""What the built-in localizers share: a network, its class names and preprocessing, on a runtime."""
from __future__ import annotations

import torch

from tedloc.data.preprocessing import Preprocessing
from tedloc.engine.run_folder import RunFolder
from tedloc.utils.device import Runtime

__all__ = ["NetworkLocalizer", "recorded_preprocessing"]


class NetworkLocalizer:
    """A network ``model`` as a :class:`~tedloc.models.localizer.LocalizationModel`.

    ``preprocessing`` defaults to the model's own record (``model.preprocessing``).
    """

    map_kind = "map"

    def __init__(self, model: torch.nn.Module, class_names: list[str], preprocessing: Preprocessing | None = None,
                 runtime: Runtime = Runtime()):
        self.model = model.eval()
        self.class_names = list(class_names)
        self.preprocessing = preprocessing or model.preprocessing
        self.to(runtime)

    def to(self, runtime: Runtime) -> "NetworkLocalizer":
        """Run on ``runtime``'s device and precision (the model moves there)."""
        self.runtime = runtime
        self.model.to(runtime.device)
        return self

    @property
    def device(self) -> torch.device:
        """Where the network runs."""
        return self.runtime.device


def recorded_preprocessing(run: RunFolder, meta: dict, weights: Preprocessing | None) -> Preprocessing:
    """The preprocessing recorded in ``run``'s ``model.json``. ``weights``: the record of weights the run did not
    train (timm's or a file's, from :func:`~tedloc.models.preprocessing_of`): the recorded normalisation must be
    theirs (a mismatch is a :class:`TedlocError` naming the file); None: weights the run (or the run it
    started from) trained itself, whose record is the truth."""
    where = str(run.metadata_path)
    recorded = Preprocessing.from_dict(meta.get("preprocessing"), where=f"{where}: preprocessing")
    if weights is not None:
        recorded.check_normalization(weights, where)
    return recorded

"""The CAM family's post-hoc maps of a trained classifier (CNN or ViT), through the ``grad-cam`` package
(pytorch-grad-cam): the baselines of the TrCAM-V paper's tables beside CAM itself (:mod:`tedloc.pseudolabels.cam`).

- ``gradcam``: Grad-CAM (Selvaraju et al. 2017), channel weights = mean gradient.
- ``gradcam++``: Grad-CAM++ (Chattopadhay et al. 2018), weights from second- and third-order terms.
- ``smoothgradcam++``: Smooth Grad-CAM++ (Omeiza et al. 2019): Grad-CAM++ on ``samples`` copies of the input with
  Gaussian noise of ``sigma`` times the input's range, averaged (the TCAM code's setting: 4 copies, sigma 0.3). The
  paper averages the gradients of the noisy copies inside Grad-CAM++; averaging the maps is what tedloc does.
- ``xgradcam``: XGrad-CAM (Fu et al. 2020), activation-weighted gradients.
- ``layercam``: LayerCAM (Jiang et al. 2021), element-wise positive gradients times activations.
- ``scorecam``: Score-CAM (Wang et al. 2020), gradient-free: each channel's weight is the class score of the image
  masked by that channel's (min-max normalised, upsampled) activation, softmax over the channels; one forward pass
  per channel (in batches of :data:`SCORE_CAM_BATCH` masked images).
- ``eigencam``: Eigen-CAM (Muhammad and Yeasin 2020), gradient-free and class-free: the activations projected on
  their first principal component: the same map for every class (:data:`CLASS_FREE_CAMS`).

Every map but ``eigencam`` is for a given class (the true one under the GT-known protocol) or the predicted one, on
the layer :func:`~tedloc.pseudolabels.gradcam.default_target_layer` picks (a CNN's last feature stage, a ViT's last
block's ``norm1`` with its tokens laid out on the patch grid) or the one named by a module path
(:func:`~tedloc.pseudolabels.gradcam.find_target_layer`), in [0, 1] at the input resolution. The noise of
``smoothgradcam++`` is drawn from a generator seeded with ``seed``, so the maps are reproducible.
"""
from __future__ import annotations

import contextlib
import io

import torch
import torch.nn as nn

from tedloc.errors import TedlocError
from tedloc.pseudolabels.gradcam import _vit_reshape, target_layer_of

__all__ = ["GRADIENT_CAMS", "CLASS_FREE_CAMS", "SCORE_CAM_BATCH", "gradient_cams"]

# name -> the pytorch_grad_cam class behind it (the post-hoc maps; Score-CAM and Eigen-CAM need no gradient)
GRADIENT_CAMS = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "smoothgradcam++": "GradCAMPlusPlus",
                 "xgradcam": "XGradCAM", "layercam": "LayerCAM", "scorecam": "ScoreCAM", "eigencam": "EigenCAM"}
CLASS_FREE_CAMS = ("eigencam",)  # the same map whatever the class
SCORE_CAM_BATCH = 64  # masked images per forward pass of Score-CAM (the library's default is 16; same maps)


def gradient_cams(model: nn.Module, images: torch.Tensor, classes: torch.Tensor | None, kind: str = "gradcam",
                  target_layer: nn.Module | str | None = None, samples: int = 4, sigma: float = 0.3, seed: int = 0
                  ) -> torch.Tensor:
    """Maps ``(B, H, W)`` in [0, 1] of ``kind`` (see the module docstring) for ``classes`` (None: the predicted), on
    ``target_layer`` (a module, a dotted module path, or None: the architecture's default)."""
    try:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        raise TedlocError("the CAM family needs the grad-cam package: pip install --no-deps 'grad-cam>=1.5' "
                          "(see docs/INSTALL.md for why --no-deps)") from None
    if kind not in GRADIENT_CAMS:
        raise TedlocError(f"unknown CAM-family map {kind!r}; choose from {', '.join(GRADIENT_CAMS)}")
    layer = target_layer_of(model, target_layer)
    reshape = _vit_reshape(model, tuple(images.shape[-2:])) if hasattr(model, "num_prefix_tokens") else None
    was_training = model.training
    model.eval()
    with torch.enable_grad():
        if classes is None:
            with torch.no_grad():
                classes = model(images).argmax(dim=1)
        targets = [ClassifierOutputTarget(int(c)) for c in classes]
        inputs = [images]
        if kind == "smoothgradcam++":
            generator = torch.Generator(device="cpu").manual_seed(seed)
            spread = sigma * (images.amax() - images.amin()).item()
            inputs = [images + spread * torch.randn(images.shape, generator=generator).to(images.device)
                      for _ in range(samples)]
        method = getattr(pytorch_grad_cam, GRADIENT_CAMS[kind])
        with method(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
            if kind == "scorecam":
                cam.batch_size = SCORE_CAM_BATCH
            quiet = contextlib.redirect_stderr(io.StringIO()) if kind == "scorecam" else contextlib.nullcontext()
            with quiet:  # Score-CAM draws a progress bar per image
                maps = sum(torch.from_numpy(cam(input_tensor=x, targets=targets)) for x in inputs) / len(inputs)
    model.train(was_training)
    return maps.float()

"""Class anchors from text: prompts -> text encoder -> one embedding per class -> QR orthogonalisation.

Per class: every template is filled with the class name, encoded and L2-normalised; the mean
over templates is L2-normalised again (CLIP's zero-shot recipe). The resulting rows ``E``
(K x d) are then orthogonalised by QR (on by default, TeD-Loc's choice), in class-index order:

- **K <= d**: the reduced QR of ``E^T``, with signs fixed so that ``diag(R) > 0``. Anchor ``k`` is
  the Gram-Schmidt orthonormalisation of ``e_k`` against ``e_0 .. e_{k-1}``: orthonormal anchors
  in the text space (same dimension d).
- **K > d** (e.g. ImageNet's 1000 classes against a 512/768-d text space): K orthonormal vectors
  cannot exist in R^d. Default ``lift="full"``: the complete QR of ``E`` (K x K), anchors = its
  rows, exactly orthonormal in R^K (so a model's embedding dimension becomes K); their first d
  coordinates are the whitened text embeddings ``E R^-1``, the rest an orthonormal completion.
  Alternative ``lift="reduced"``: the rows of the reduced Q (K x d), re-normalised: whitened and
  decorrelated, but not mutually orthogonal, in the original dimension.

``mean_abs_cos`` reports the mean |cosine| between distinct anchors before and after.
Anchors are stored with every model that uses them (safetensors + JSON metadata), so the text
encoder is never needed at inference.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tedloc.errors import OptionError, TedlocError
from tedloc.text.encoders import DEFAULT_TEXT_ENCODER, TextEncoder, create_text_encoder

__all__ = ["TextAnchors", "build_anchors", "orthogonalize", "mean_abs_cos", "TEMPLATES", "LIFTS"]

TEMPLATES = {
    "photo": ["a photo of a {}."],
    "ensemble": [
        "a photo of a {}.",
        "a photo of the {}.",
        "a close-up photo of a {}.",
        "a photo of a small {}.",
        "a photo of a large {}.",
        "a cropped photo of a {}.",
        "a blurry photo of a {}.",
        "an image of a {}.",
    ],
    "origami": ["a clean origami {}."],  # CLIP-ES's single template
}
LIFTS = ("full", "reduced")


def mean_abs_cos(vectors: np.ndarray) -> float:
    """Mean |cosine similarity| over all pairs of distinct rows."""
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    k = len(v)
    if k < 2:
        return 0.0
    g = np.abs(v @ v.T)
    return float((g.sum() - np.trace(g)) / (k * (k - 1)))


def _fix_signs(q: np.ndarray, r: np.ndarray, n: int) -> np.ndarray:
    """Flip columns of q so that the first n diagonal entries of r are positive."""
    s = np.sign(np.diag(r)[:n])
    s[s == 0] = 1.0
    q = q.copy()
    q[:, :n] *= s
    return q


def orthogonalize(embeddings: np.ndarray, lift: str = "full") -> np.ndarray:
    """QR-orthogonalised anchors of the rows of ``embeddings`` (see the module docstring)."""
    if lift not in LIFTS:
        raise OptionError(f"lift must be one of {LIFTS}, got {lift!r}")
    e = np.asarray(embeddings, dtype=np.float64)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    k, d = e.shape
    if k <= d:
        q, r = np.linalg.qr(e.T, mode="reduced")  # d x k, k x k
        return _fix_signs(q, r, k).T
    if lift == "reduced":
        q, r = np.linalg.qr(e, mode="reduced")  # k x d
        q = _fix_signs(q, r, d)
        return q / np.linalg.norm(q, axis=1, keepdims=True)
    q, r = np.linalg.qr(e, mode="complete")  # k x k
    q = _fix_signs(q, r, d)
    # the completion's columns have no sign convention of their own: make the largest entry positive
    for j in range(d, k):
        if q[np.argmax(np.abs(q[:, j])), j] < 0:
            q[:, j] *= -1
    return q


@dataclass
class TextAnchors:
    """Class anchors and how they were made.

    Attributes:
        class_names: one per class index.
        vectors: the anchors (K, D), float32; D = d, or K for the full lift.
        raw: the normalised text embeddings (K, d) before orthogonalisation, float32.
        encoder: the text encoder spec.
        templates: the prompt templates.
        orthogonalized: whether ``vectors`` are the QR anchors (else equal to ``raw``).
        lift: the rule used when K > d.
    """

    class_names: list[str]
    vectors: np.ndarray
    raw: np.ndarray
    encoder: str
    templates: list[str]
    orthogonalized: bool = True
    lift: str = "full"
    stats: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """The anchor dimension D."""
        return int(self.vectors.shape[1])

    def metadata(self) -> dict:
        """The fields other than the ``vectors`` and ``raw`` arrays, as a dict (stored in the anchor file)."""
        meta = asdict(self)
        del meta["vectors"], meta["raw"]
        return meta

    def save(self, path: str | os.PathLike) -> Path:
        """One ``.safetensors`` file: tensors ``anchors`` and ``raw``, JSON metadata inside (atomic write)."""
        from safetensors.numpy import save

        from tedloc.utils.io import atomic_write

        path = Path(path)
        blob = save({"anchors": np.ascontiguousarray(self.vectors, dtype=np.float32),
                     "raw": np.ascontiguousarray(self.raw, dtype=np.float32)},
                    metadata={"tedloc.anchors": json.dumps(self.metadata())})
        with atomic_write(path, "wb") as f:
            f.write(blob)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TextAnchors":
        """Read an anchor file written by :meth:`save` (TedlocError if missing or not an anchor file)."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise TedlocError(f"anchor file not found: {path}")
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = json.loads((f.metadata() or {})["tedloc.anchors"])
                vectors, raw = f.get_tensor("anchors"), f.get_tensor("raw")
        except Exception as e:  # a foreign or damaged file: name it instead of a deep traceback
            raise TedlocError(f"{path}: not a tedloc anchor file ({type(e).__name__}: {e})") from None
        return cls(vectors=vectors, raw=raw, **meta)


def build_anchors(
    class_names: list[str],
    encoder: str | TextEncoder = DEFAULT_TEXT_ENCODER,
    templates: list[str] | str = "photo",
    orthogonalize_anchors: bool = True,
    lift: str = "full",
    device: str = "cpu",
) -> TextAnchors:
    """Text anchors for ``class_names`` (see the module docstring)."""
    if isinstance(templates, str):
        if templates not in TEMPLATES:
            raise TedlocError(f"unknown template set {templates!r}; choose from {', '.join(TEMPLATES)} "
                              f"or pass a list of strings containing '{{}}'")
        templates = TEMPLATES[templates]
    for t in templates:
        if t.count("{}") != 1:
            raise TedlocError(f"template {t!r} must contain '{{}}' exactly once")
    enc = create_text_encoder(encoder, device) if isinstance(encoder, str) else encoder
    if getattr(enc, "fixed_table", False):
        raw = enc.table
        if len(raw) != len(class_names):
            raise TedlocError(f"the embedding file has {len(raw)} rows for {len(class_names)} classes")
    else:
        per_template = np.stack([enc([t.format(name) for name in class_names]) for t in templates])
        raw = per_template.mean(axis=0)
        raw = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    vectors = orthogonalize(raw, lift) if orthogonalize_anchors else raw
    stats = {"mean_abs_cos_raw": mean_abs_cos(raw), "mean_abs_cos_anchors": mean_abs_cos(vectors),
             "text_dim": int(raw.shape[1]), "anchor_dim": int(vectors.shape[1])}
    return TextAnchors(list(class_names), vectors.astype(np.float32), raw.astype(np.float32),
                       getattr(enc, "spec", str(encoder)), list(templates), orthogonalize_anchors, lift, stats)

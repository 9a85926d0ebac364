"""A localization map over its image, with the predicted box (and the GT boxes when known)."""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

__all__ = ["render_overlay", "wrap_caption"]

_PRED = (255, 255, 255)  # RGB
_GT = (0, 255, 0)


def render_overlay(image: Image.Image, score_map: np.ndarray, box=None, gt_boxes=None, caption: str = "",
                   alpha: float = 0.5, min_side: int = 256, boxes_in: tuple[int, int] | None = None) -> Image.Image:
    """Blend a [0, 1] map (any size; resized to the image) as a jet heat map over ``image``.

    ``box``/``gt_boxes`` are inclusive ``(x0, y0, x1, y1)`` in image pixels (predicted: white,
    GT: green), or in the pixels of an image of size ``boxes_in`` = (width, height) that ``image``
    shows at reduced size (a large image's overlay drawn at its map's size). Small images are
    enlarged (nearest) to ``min_side`` so boxes and text stay legible. Boxes are drawn inside their
    bounds (a box of the whole image stays visible); a legend in the bottom-left corner names the colours
    of the boxes drawn.
    """
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    h, w = rgb.shape[:2]
    m = np.asarray(score_map, dtype=np.float32)
    if m.shape != (h, w):
        m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.clip(m * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    out = (rgb * (1 - alpha) + heat * alpha).astype(np.uint8)
    scale = max(1, int(np.ceil(min_side / max(1, min(h, w)))))
    if scale > 1:
        out = cv2.resize(out, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    out = np.ascontiguousarray(out)
    thick = max(1, round(min(out.shape[:2]) / 150))
    bw, bh = boxes_in or (w, h)
    sx, sy = out.shape[1] / bw, out.shape[0] / bh
    for boxes, color in ((gt_boxes, _GT), ([box] if box is not None else None, _PRED)):
        for b in boxes if boxes is not None else []:
            x0, y0, x1, y1 = (int(v) for v in b)
            start = (round(x0 * sx), round(y0 * sy))
            end = (max(start[0], round((x1 + 1) * sx) - 1), max(start[1], round((y1 + 1) * sy) - 1))
            inset = thick // 2  # the line lies inside the box: one along the image border stays visible
            start = (min(start[0] + inset, out.shape[1] - 1), min(start[1] + inset, out.shape[0] - 1))
            end = (max(start[0], end[0] - inset), max(start[1], end[1] - inset))
            cv2.rectangle(out, start, end, color, thick)
    drawn = [(name, color) for name, boxes, color in (("GT", gt_boxes, _GT), ("predicted", box, _PRED))
             if boxes is not None and len(boxes)]
    if drawn:
        _legend(out, drawn)
    if caption:
        font_scale = max(0.4, min(out.shape[:2]) / 500)
        lines = wrap_caption(caption, out.shape[1] - 6, font_scale)
        (_, th), base = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        step = th + base + 2
        width = max(cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)[0][0] for line in lines)
        cv2.rectangle(out, (0, 0), (min(out.shape[1] - 1, width + 6), len(lines) * step + 4), (0, 0, 0), -1)
        for i, line in enumerate(lines):
            cv2.putText(out, line, (3, th + 3 + i * step), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1,
                        cv2.LINE_AA)
    return Image.fromarray(out)


def wrap_caption(caption: str, width: int, font_scale: float) -> list[str]:
    """``caption`` in lines of at most ``width`` pixels in OpenCV's simplex font at ``font_scale``: broken at
    spaces, and a word wider than a line broken between its characters (nothing of the text is left out)."""
    def fits(text: str) -> bool:
        return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)[0][0] <= width

    lines: list[str] = []
    for word in caption.split():
        if lines and fits(f"{lines[-1]} {word}"):
            lines[-1] = f"{lines[-1]} {word}"
            continue
        lines.append("")
        for char in word:  # a new line, filled with the word, broken where it does not fit
            if lines[-1] and not fits(lines[-1] + char):
                lines.append("")
            lines[-1] += char
    return lines or [""]


def _legend(out: np.ndarray, entries: list[tuple[str, tuple[int, int, int]]]) -> None:
    """Colour swatches and names on a dark strip in the bottom-left corner of ``out`` (in place)."""
    font_scale = max(0.35, min(out.shape[:2]) / 600)
    (_, th), base = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    width = 8 + sum(cv2.getTextSize(n, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)[0][0] + th + 12 for n, _ in entries)
    top = out.shape[0] - th - base - 6
    cv2.rectangle(out, (0, top), (min(out.shape[1] - 1, width), out.shape[0] - 1), (0, 0, 0), -1)
    x = 4
    for name, color in entries:
        cv2.rectangle(out, (x, top + 3), (x + th, top + 3 + th), color, -1)
        x += th + 4
        cv2.putText(out, name, (x, top + 3 + th), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
        x += cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)[0][0] + 8

"""Installation sanity check run by ``make setup``: exactly one OpenCV distribution, with contrib modules."""
from __future__ import annotations

import sys
from importlib import metadata

_CV2_DISTRIBUTIONS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python",
                      "opencv-contrib-python-headless")


def installed_cv2_distributions() -> list[str]:
    """The OpenCV distributions (pip names) that are installed."""
    found = []
    for name in _CV2_DISTRIBUTIONS:
        try:
            metadata.version(name)
            found.append(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def main() -> int:
    """Check that opencv-contrib-python-headless alone is installed, with ``cv2.ximgproc``; returns the exit status."""
    found = installed_cv2_distributions()
    if found != ["opencv-contrib-python-headless"]:
        print(f"error: expected only opencv-contrib-python-headless, found {found or 'none'}; two cv2 "
              "distributions overwrite each other's files. Uninstall the others, then reinstall "
              "opencv-contrib-python-headless.", file=sys.stderr)
        return 1
    import cv2

    if not hasattr(cv2, "ximgproc"):
        print("error: cv2.ximgproc is missing (the contrib modules are needed for Selective Search)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

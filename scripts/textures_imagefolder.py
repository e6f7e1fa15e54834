"""Write a skimage-textures dataset as an ImageFolder tree of 8-bit grey PNG files: the
generic ``generated_imagefolder.py`` with skimage-textures as its default dataset.

    .venv/bin/python scripts/textures_imagefolder.py /tmp/textures
    .venv/bin/python scripts/textures_imagefolder.py /tmp/tex96 --dataset skimage-textures-96
"""

from __future__ import annotations

import sys

from generated_imagefolder import main  # this script's folder is first on sys.path

if __name__ == "__main__":
    sys.exit(main("skimage-textures"))

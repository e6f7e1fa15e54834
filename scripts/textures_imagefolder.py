"""Write a skimage-textures dataset as an ImageFolder tree of 8-bit grey PNG files, to look
at or to read with other tools:

    OUT/train/<photo>/<n>_y<top>_x<left>.png   OUT/test/<photo>/<n>_y<top>_x<left>.png

(top, left) is the patch's corner in its photo. Then it prints the split sizes and the
trivial-cue baseline (logistic regression on each patch's mean and standard deviation):

    .venv/bin/python scripts/textures_imagefolder.py /tmp/textures
    .venv/bin/python scripts/textures_imagefolder.py /tmp/tex96 --dataset skimage-textures-96
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wae.data import DataError, build_dataset, trivial_cue_accuracy
from wae.data.textures import write_image_folder


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="a new or empty folder to write")
    p.add_argument("--dataset", default="skimage-textures", help="a skimage-textures name")
    args = p.parse_args()
    try:
        write_image_folder(args.dataset, args.out)
        train = build_dataset(args.dataset, "train", train_transforms=False)
        test = build_dataset(args.dataset, "test")
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cue = trivial_cue_accuracy(train, test)
    print(
        f"Wrote {len(train)} train + {len(test)} test patches of {len(train.classes)} classes "
        f"under {args.out}/train and /test; trivial-cue baseline {cue:.1f} % top-1 (chance "
        f"{100 / len(train.classes):.1f} %)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

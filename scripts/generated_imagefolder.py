"""Write a generated dataset (skimage-textures or fonts) as an ImageFolder tree of 8-bit grey
PNG files, to look at or to read with other tools:

    OUT/train/<class>/<stem>.png   OUT/test/<class>/<stem>.png

The stem names each item: ``<n>_y<top>_x<left>`` (a texture patch's corner in its photo) or
``<n>_<string>`` (a font render's letters). Then it prints the split sizes and the trivial-cue
baseline (logistic regression on each image's mean, standard deviation and ink fraction):

    .venv/bin/python scripts/generated_imagefolder.py /tmp/fonts --dataset fonts
    .venv/bin/python scripts/generated_imagefolder.py /tmp/tex96 --dataset skimage-textures-96
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wae.data import DataError, build_dataset, trivial_cue_accuracy
from wae.data.generated import write_image_folder


def main(default_dataset: str = "fonts") -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="a new or empty folder to write")
    p.add_argument(
        "--dataset", default=default_dataset, help="a skimage-textures or fonts dataset name"
    )
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
        f"Wrote {len(train)} train + {len(test)} test images of {len(train.classes)} classes "
        f"under {args.out}/train and /test; trivial-cue baseline {cue:.1f} % top-1 (chance "
        f"{100 / len(train.classes):.1f} %)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write a class-balanced part of Fashion-MNIST as an ImageFolder tree of PNG files:

    OUT/train/<class>/<index>.png   OUT/test/<class>/<index>.png

An ImageFolder on disk is what most users bring; this makes one from the data every machine
here has, so `wae train` / `wae accelerate` on folders can be run and checked end to end:

    .venv/bin/python scripts/fmnist_imagefolder.py /tmp/fm-folder --train 6000 --test 2000
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from wae.data import FASHION_MNIST_CLASSES, balanced_subset, load_fashion_mnist


def write_split(out: Path, split: str, n: int, seed: int) -> None:
    images, labels = load_fashion_mnist(split)
    for i in balanced_subset(labels, n, seed).tolist():
        folder = out / split / FASHION_MNIST_CLASSES[int(labels[i])].replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i].numpy(), mode="L").save(folder / f"{i:05d}.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="folder to write (must not exist)")
    p.add_argument("--train", type=int, default=6000, help="training images")
    p.add_argument("--test", type=int, default=2000, help="test images")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.out.exists():
        p.error(f"{args.out} exists: name a new folder.")
    write_split(args.out, "train", args.train, args.seed)
    write_split(args.out, "test", args.test, args.seed)
    print(f"Wrote {args.train} + {args.test} PNG images under {args.out}/train and /test.")


if __name__ == "__main__":
    main()

"""Data layer: datasets, transforms and loaders for training and evaluating WAE models.

One entry point, :func:`build_dataset`, covers five sources:

* ``"fashion-mnist"`` (the embedded default): read straight from its four IDX files
  (:func:`read_idx`). Default location ``/usr/share/datasets/fashion-mnist`` (Debian package
  ``dataset-fashion-mnist``), overridable by ``data_dir`` or ``$WAE_DATA_DIR``. A whole split is
  held as one uint8 tensor, so fetching an item is a tensor index, not a PIL round trip.
* ``"cifar10"`` / ``"cifar100"``: loaded (or downloaded) by torchvision, then held as a tensor
  the same way.
* ``"skimage-textures"``: grey texture patches cut from the photos scikit-image bundles
  (``textures``), built in seconds, identical on every machine.
* ``"fonts"``: font identification, letter strings rendered in the TrueType faces matplotlib
  ships (``fonts``), built in seconds, identical wherever Pillow and FreeType are.
* any directory in ImageFolder layout (``root/<class>/<image>``, optionally with
  ``root/train`` and ``root/val``), e.g. ImageNet or face-identity folders.

Every item is ``(image, label)`` with ``image`` a float32 tensor of shape
``(in_chans, input_size, input_size)`` and values in ``[0, 1]``. The pixel scale matters: the
noise-robustness evaluation adds noise whose variance is defined on this [0, 1] scale.
Per-dataset mean/std are recorded as metadata (``.mean``, ``.std``) but are NOT applied here;
the model normalises its own input.

Augmentation follows the paper (resize 256, random crop 224, horizontal flip on ImageNet)
scaled to the input size; see :func:`build_transform` for the exact rule, including the
small-image rule used for Fashion-MNIST and CIFAR at their native resolution.

Problems with the data raise :class:`DataError` (a ``ValueError``) with a one-paragraph message
saying what is wrong, where, and what to do; the CLI turns it into exit code 2.

Modules, one concern each: ``errors`` (DataError/DataWarning), ``idx`` (IDX file I/O),
``locate`` (data directories, finding the Fashion-MNIST files), ``sources`` (in-memory
Fashion-MNIST/CIFAR splits), ``folders`` (ImageFolder trees), ``transforms`` (resize/crop/flip,
channel stats), ``splits`` (balanced subsets, stratified splits), ``datasets``
(:func:`build_dataset`, :class:`LabeledDataset`), ``loaders`` (seeded DataLoaders),
``seeded`` (integer random streams), ``textures`` (skimage-textures), ``fonts`` (font
identification), ``generated`` (both by name, and as an ImageFolder), ``cues`` (the trivial-cue
baseline: brightness, contrast, ink).
"""

from .cues import CUE_FEATURES, trivial_cue_accuracy
from .datasets import DATASET_NAMES, DatasetInfo, LabeledDataset, Split, build_dataset
from .errors import DataError, DataWarning
from .folders import FOLDER_VAL_FRACTION, ImageFolderSource
from .idx import read_idx, write_idx
from .loaders import build_loader
from .locate import DATA_DIR_ENV, DEFAULT_CACHE_DIR, DEFAULT_FASHION_MNIST_DIR
from .sources import CIFAR10_CLASSES, FASHION_MNIST_CLASSES, TensorImageSource, load_fashion_mnist
from .splits import balanced_subset, stratified_split, train_val_split
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageTransform,
    build_transform,
    check_input_size,
    resize_for,
)

__all__ = [
    "CIFAR10_CLASSES",
    "CUE_FEATURES",
    "DATASET_NAMES",
    "DATA_DIR_ENV",
    "DEFAULT_CACHE_DIR",
    "DEFAULT_FASHION_MNIST_DIR",
    "DataError",
    "DataWarning",
    "DatasetInfo",
    "FASHION_MNIST_CLASSES",
    "FOLDER_VAL_FRACTION",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageFolderSource",
    "ImageTransform",
    "LabeledDataset",
    "Split",
    "TensorImageSource",
    "balanced_subset",
    "build_dataset",
    "build_loader",
    "build_transform",
    "check_input_size",
    "load_fashion_mnist",
    "resize_for",
    "read_idx",
    "stratified_split",
    "train_val_split",
    "trivial_cue_accuracy",
    "write_idx",
]

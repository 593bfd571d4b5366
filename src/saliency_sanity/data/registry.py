"""The dataset registry: every dataset the experiments can explain or train on, by name.

An entry is one decorated loader ``fn(split, source) -> Examples | (images, labels)``:

- *downloaded* datasets (MNIST, Fashion-MNIST) list their files with official md5s and the hosts
  to fetch them from (:func:`fetch_dataset`), and read them as IDX;
- *derived* datasets name the datasets they are made from (``depends_on``) and build their
  examples with a recipe from those (``source.load(base, split)``), e.g. the label-permuted ones;
- natural images for the ImageNet models come from scikit-image or a folder (``imagenet``).

Images are float32 (N, C, H, W) in the model's input space, labels int64 (N,). The runner, training
and the theory checks load data only through :func:`load_examples` / :func:`load_split`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from saliency_sanity.context import ValidRange
from saliency_sanity.data.download import fetch_files, mirror_folder
from saliency_sanity.data.idx import IdxFormatError, read_idx
from saliency_sanity.registry import Registry


@dataclass(frozen=True)
class Examples:
    """A dataset split as the model sees it, plus what figures should show, where that differs."""

    images: torch.Tensor  # (N, C, H, W) float32, the model's input
    labels: torch.Tensor  # (N,) int64
    display: torch.Tensor | None = None  # (N, C, H, W) in [0, 1], e.g. photos before normalization
    valid_range: ValidRange = ValidRange()  # a pixel's values in the input space ([0, 1] unless normalized)

    def first(self, n: int | None) -> Examples:
        if n is None:
            return self
        display = None if self.display is None else self.display[:n]
        return replace(self, images=self.images[:n], labels=self.labels[:n], display=display)

    def to(self, device: torch.device) -> Examples:
        """The images and labels on ``device`` (what figures show stays where it is)."""
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))


@dataclass(frozen=True)
class DataSource:
    """What a dataset's loader may use: the data folder, the seed, its config options, how many examples."""

    data_dir: Path = Path("data")
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)
    n: int | None = None  # the caller wants the first n examples (a loader may read only those)

    def load(self, name: str, split: str) -> Examples:
        """Another dataset's split (for derived datasets), all of it."""
        return load_examples(name, split, DataSource(self.data_dir, self.seed, {}, None))


Loader = Callable[[str, DataSource], "Examples | tuple[torch.Tensor, torch.Tensor]"]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset and what the workflow needs to know of it."""

    name: str
    load: Loader
    num_classes: int
    splits: tuple[str, ...] = ("train", "test")
    files: Mapping[str, str] = field(default_factory=dict)  # downloaded: file name -> official md5
    urls: tuple[str, ...] = ()  # downloaded: base URLs tried in order
    depends_on: tuple[str, ...] = ()  # derived: the datasets its recipe reads
    description: str = ""
    folder: str | None = None  # downloaded: where its files live below the data folder and the mirror;
    # None: <name>/raw

    @property
    def downloaded(self) -> bool:
        return bool(self.files)


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(
    name: str,
    *,
    num_classes: int,
    splits: tuple[str, ...] = ("train", "test"),
    files: Mapping[str, str] | None = None,
    urls: tuple[str, ...] = (),
    depends_on: tuple[str, ...] = (),
    folder: str | None = None,
) -> Callable[[Loader], Loader]:
    """Register the loader ``fn(split, source)`` of dataset ``name``; returns ``fn`` unchanged.

    A downloaded dataset's files live in ``<data_dir>/<folder>`` and ``<mirror>/<folder>``
    (``folder`` default: ``<name>/raw``).
    """

    def decorator(fn: Loader) -> Loader:
        unknown = [base for base in depends_on if base not in DATASETS]
        if unknown:
            raise ValueError(f"dataset {name!r} depends on unregistered dataset(s) {unknown}")
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        DATASETS.add(name, DatasetSpec(name, fn, num_classes, tuple(splits), dict(files or {}), tuple(urls),
                                       tuple(depends_on), doc, folder))
        return fn

    return decorator


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of a registered dataset; an unknown name is an error listing the registered ones."""
    return DATASETS.get_entry(name)


def downloads_of(name: str) -> list[str]:
    """The downloaded datasets that ``name`` reads, itself included when it is one (in order, once)."""
    spec = dataset_spec(name)
    found = [name] if spec.downloaded else []
    for base in spec.depends_on:
        found += [d for d in downloads_of(base) if d not in found]
    return found


def raw_dir(name: str, data_dir: str | os.PathLike) -> Path:
    """Where a downloaded dataset's files live: ``<data_dir>/<name>/raw``, or its own folder there."""
    return Path(data_dir) / (dataset_spec(name).folder or f"{name}/raw")


def fetch_dataset(
    name: str, data_dir: str | os.PathLike, mirror: str | os.PathLike | None = None, *,
    retries: int = 3, timeout: float = 60,
) -> Path:
    """Make sure ``<data_dir>/<name>/raw/`` holds a downloaded dataset's files, md5-verified.

    Files come from ``mirror`` (else ``$SALIENCY_DATA_MIRROR``), laid out as
    ``<mirror>/<name>/raw/<file>`` (or the dataset's own folder), or from the official host, then a
    fallback. Returns the folder.
    """
    spec = dataset_spec(name)
    if not spec.downloaded:
        raise ValueError(f"dataset {name!r} is not downloaded (it is built from {list(spec.depends_on) or 'code'}); "
                         f"fetch {downloads_of(name) or 'nothing'} instead")
    mirror_dir = mirror_folder(mirror)
    return fetch_files(spec.files, spec.urls, raw_dir(name, data_dir),
                       raw_dir(name, mirror_dir) if mirror_dir is not None else None, retries=retries, timeout=timeout)


def load_examples(name: str, split: str, source: DataSource | None = None) -> Examples:
    """The examples of one split of a registered dataset, checked, the first ``source.n`` of them."""
    spec = dataset_spec(name)
    source = source or DataSource()
    if split not in spec.splits:
        raise ValueError(f"dataset {name!r} has no split {split!r}; it has {list(spec.splits)}")
    loaded = spec.load(split, source)
    examples = loaded if isinstance(loaded, Examples) else Examples(*loaded)
    images, labels = examples.images, examples.labels
    if images.dim() < 3 or not images.is_floating_point() or labels.shape != (len(images),) \
            or labels.dtype != torch.int64:
        raise ValueError(f"dataset {name!r} loaded images {tuple(images.shape)} {images.dtype} and labels "
                         f"{tuple(labels.shape)} {labels.dtype}; expected float (N, C, ...) and int64 (N,)")
    if source.n is not None and len(images) < source.n:
        raise ValueError(f"{source.n} examples were asked of the {split} split of {name!r}, which has {len(images)} "
                         f"(config key randomization.n_images or imagenet.n_images)")
    return examples.first(source.n)


def load_split(name: str, data_dir: str | os.PathLike, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of one split of a registered dataset, all of it."""
    examples = load_examples(name, split, DataSource(Path(data_dir)))
    return examples.images, examples.labels


def train_validation_split(
    images: torch.Tensor, labels: torch.Tensor, validation_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_images, train_labels, val_images, val_labels): the first ``validation_size`` are held out, as in the paper."""
    if not 0 <= validation_size < len(images):
        raise ValueError(
            f"validation_size must be in [0, {len(images)}) for {len(images)} training images, got {validation_size}"
        )
    return images[validation_size:], labels[validation_size:], images[:validation_size], labels[:validation_size]


def permute_labels(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded random permutation of ``labels`` (same class counts, image-label pairing destroyed)."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    return labels[order]


# --------------------------------------------------------------------------- the built-in datasets

IDX_SPLITS: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MNIST_SIZE = 28


def read_idx_split(name: str, data_dir: str | os.PathLike, split: str, num_classes: int) -> Examples:
    """A 28 x 28 IDX split: images as float32 (N, 1, 28, 28) in [0, 1] (the paper's inputs / 255), int64 labels."""
    image_path, label_path = (raw_dir(name, data_dir) / filename for filename in IDX_SPLITS[split])
    for path in (image_path, label_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist; fetch the dataset first "
                f"(saliency-sanity download {name} --data-dir {data_dir})"
            )
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (MNIST_SIZE, MNIST_SIZE):
        raise IdxFormatError(f"{image_path}: expected uint8 images of shape (N, {MNIST_SIZE}, {MNIST_SIZE}), "
                             f"got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
        raise IdxFormatError(f"{label_path}: expected {len(images)} uint8 labels, got {labels.dtype} {labels.shape}")
    if labels.size and labels.max() >= num_classes:
        raise IdxFormatError(f"{label_path}: label {labels.max()} outside 0..{num_classes - 1}")
    pixels = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return Examples(pixels, torch.from_numpy(labels.astype(np.int64)))


def register_idx_dataset(name: str, files: Mapping[str, str], urls: tuple[str, ...]) -> None:
    """A downloaded 10-class 28 x 28 IDX dataset (the MNIST layout), and its label-permuted derivative."""

    def load(split: str, source: DataSource) -> Examples:
        return read_idx_split(name, source.data_dir, split, 10)

    load.__doc__ = f"{name}: 28 x 28 grayscale images in [0, 1], 10 classes (downloaded, md5-checked)"
    register_dataset(name, num_classes=10, files=files, urls=urls)(load)

    def permuted(split: str, source: DataSource) -> Examples:
        base = source.load(name, split)
        return replace(base, labels=permute_labels(base.labels, source.seed))

    permuted.__doc__ = f"{name} with its labels permuted by the seed (the data-randomization test's recipe)"
    register_dataset(f"{name}-permuted-labels", num_classes=10, depends_on=(name,))(permuted)


register_idx_dataset(
    "mnist",
    {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    ("http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
)
register_idx_dataset(
    "fashion-mnist",
    {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
     "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
)


# The paper's demo photos (its repository's data/demo_images, six ImageNet photos; the junco is
# the one of its Fig. 2) and PAIR-code/saliency's doberman, with their ImageNet classes (ILSVRC2012
# validation ground truth; the beacon's from its train-set synset, the doberman's from its name).
DEMO_PHOTOS: dict[str, tuple[int, str]] = {  # file -> (class index, md5)
    "ILSVRC2012_val_00010495.JPEG": (987, "7c76318b3352cdc4f2fb5c61d5e7885d"),  # corn
    "ILSVRC2012_val_00015410.JPEG": (13, "4c76b039e957a5dbaf05a6e4e666cb46"),  # junco
    "ILSVRC2012_val_00021206.JPEG": (184, "45f23bc30070ca3d4936c02f3cd18d55"),  # Irish terrier
    "ILSVRC2012_val_00032239.JPEG": (184, "1e5f1576cfa46eebbcd3f7156f2e1c90"),  # Irish terrier
    "ILSVRC2012_val_00041179.JPEG": (814, "48cd42e9e1e8f95a3baec9867b6e5229"),  # speedboat
    "n02814860_87.JPEG": (437, "70014277c3aa135c32e1678742352e2f"),  # beacon
    "doberman.png": (236, "3a83e583ed80adcfbd653c1dc1ef573d"),  # Doberman
}
DEMO_SOURCE = "demo"  # the imagenet.images entry that names these photos


@register_dataset(
    "imagenet-demo", num_classes=1000, splits=("test",), folder="imagenet/images",
    files={name: md5 for name, (_, md5) in DEMO_PHOTOS.items()},
    urls=("https://raw.githubusercontent.com/adebayoj/sanity_checks_saliency/"
          "3e24048c570f08ca655fcd332b6128fa069810a0/data/demo_images/",
          "https://raw.githubusercontent.com/PAIR-code/saliency/7b72b673fde6680180befd277c1890d4a9de4b48/"),
)
def imagenet_demo(split: str, source: DataSource) -> Examples:
    """The paper's six demo ImageNet photos and PAIR saliency's doberman (downloaded, md5-checked)."""
    return imagenet(split, DataSource(source.data_dir, source.seed, {**source.options, "sources": [DEMO_SOURCE]},
                                      source.n))


@register_dataset("imagenet", num_classes=1000, splits=("test",))
def imagenet(split: str, source: DataSource) -> Examples:
    """Natural images with ImageNet classes, in the order of the config's sources (options: sources,
    labels, size, recipe): scikit-image's photos, the demo photos, or folders with a labels file."""
    from saliency_sanity.data.images import INCEPTION_PREPROCESSING, FolderSource, load_images

    sources = source.options.get("sources")
    if not sources:
        raise ValueError("the ImageNet models need image sources: set the config key imagenet.images "
                         "(a list of 'skimage', 'demo' or folders of images with labels.json)")
    demo = FolderSource(raw_dir("imagenet-demo", source.data_dir),
                        {name: label for name, (label, _) in DEMO_PHOTOS.items()})
    recipe = source.options.get("recipe") or INCEPTION_PREPROCESSING
    image_set = load_images([demo if item == DEMO_SOURCE else item for item in sources],
                            labels_file=source.options.get("labels"), size=source.options.get("size"),
                            n_images=source.n, recipe=recipe)
    return Examples(image_set.images, image_set.labels, image_set.display, recipe.valid_range())

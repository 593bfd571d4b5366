"""Natural images for the ImageNet models: loading, and each model's preprocessing recipe.

Preprocessing (:func:`preprocess`, then :func:`normalize`) follows an :class:`ImagePreprocessing`
recipe, the model registry entry's own (``ModelSpec.image_preprocessing``): the image becomes
8-bit RGB (grayscale replicated to three channels, an alpha channel dropped, a palette
expanded), its shorter side is resized to ``resize`` with PIL's antialiased filter of the
recipe, the centre ``crop`` x ``crop`` square is cropped, and the pixels are scaled to [0, 1];
:func:`normalize` then subtracts the recipe's mean and divides by its standard deviation. That
normalized tensor is the model's input space, in which baselines (zeros) are defined.
:data:`INCEPTION_PREPROCESSING` is torchvision's ``Inception_V3_Weights.IMAGENET1K_V1.transforms()``
(342, crop 299, bilinear, ImageNet mean and std; equal to it exactly, tested); the model itself
then applies torchvision's ``transform_input``. A recipe can be run at another crop size
(:meth:`ImagePreprocessing.at`), the resize scaled in proportion.

Sources (:func:`load_images`):

- ``"skimage"``: scikit-image's bundled photos (in its wheel, no download) that show an
  ImageNet class clearly, in the order of :data:`SKIMAGE_PHOTOS` (keys are the loaders'
  names in ``skimage.data``):

  ==========  =====  ========  ==========================================================
  photo       index  class     why
  ==========  =====  ========  ==========================================================
  chelsea     281    tabby     Chelsea the cat: a striped domestic cat with the tabby's
                               "M" forehead marking (ImageNet models often split such cats
                               between 281 tabby and 282 tiger_cat).
  coffee      967    espresso  a small cup of espresso with crema on a saucer; the drink
                               fills the cup (968 cup is the runner-up class).
  rocket      657    missile   SpaceX's Falcon 9 on its launch pad (the DSCOVR launch).
                               ImageNet-1k has no rocket class; its "missile" synset
                               (n03773504) is largely photos of rockets on pads and at
                               launch, so this is where ImageNet puts such a photo.
  camera      872    tripod    the "cameraman": a man filming with a camera on a tripod.
                               The tripod is the one ImageNet class clearly in the frame
                               (and inside the centre crop); a person is no ImageNet
                               class, and his film camera is neither of the camera
                               classes (759 reflex_camera, 732 Polaroid_camera). The one
                               grayscale photo (replicated to three channels).
  ==========  =====  ========  ==========================================================

  Left out, for want of a clearly fitting ImageNet-1k class: ``astronaut`` (a person in a
  spacesuit: no person or astronaut class; the shuttle model behind her is small),
  ``stereo_motorcycle`` (motorcycle_left/right.png, a road motorcycle: ImageNet-1k has only
  665 moped and 670 motor_scooter), ``clock`` (clock_motion.png, a clock motion-blurred beyond
  recognition, a deblurring test image), ``coins`` (ancient coins: no coin class), ``horse``
  (a black silhouette, not a photo), ``moon``, ``hubble_deep_field``, ``retina``, ``cell``,
  ``immunohistochemistry`` and ``microaneurysms`` (astronomy, microscopy, ophthalmology),
  ``brick``, ``grass`` and ``gravel`` (textures), ``text`` and ``page`` (text), ``logo``,
  ``colorwheel``, ``checkerboard``, ``binary_blobs`` and ``shepp_logan_phantom``
  (synthetic), ``lfw_subset`` (small face crops), and ``cat`` (another name for ``chelsea``).
  scikit-image's other images (e.g. ``eagle``, ``lily``, ``kidney``) are not in its wheel but
  downloaded on first use, so they are not used either.

- a folder: the images listed in its labels file (default ``<folder>/labels.json``, config keys
  ``imagenet.images`` and ``imagenet.labels``), a JSON object mapping file name (relative to the
  folder) to ImageNet class index (0..999, the standard Keras/torchvision order), either as an
  int or as an object with an ``"index"`` key (further keys, e.g. ``wnid`` and ``name``, are
  ignored). Images are taken in file-name order (Python's string order: upper case before
  lower case); a file in the folder without a label is skipped with a logged warning (hidden
  files and the labels file itself silently). Files are read with PIL, with their EXIF
  orientation applied (as a viewer shows them); 16-bit and floating-point image modes are
  refused. A relative ``labels_file`` is relative to the working directory, not the folder.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable, Mapping, Sequence, Union

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from saliency_sanity.context import ValidRange
from saliency_sanity.data.download import DataError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_NUM_CLASSES = 1000
_IMAGES_CONFIG_KEY = "imagenet.images"
_LABELS_CONFIG_KEY = "imagenet.labels"
_LABELS_FILE = "labels.json"

# scikit-image photo (a loader in skimage.data) -> ImageNet class index; the module docstring
# says why each fits and why the other bundled photos are left out.
SKIMAGE_PHOTOS: dict[str, int] = {
    "chelsea": 281,  # tabby
    "coffee": 967,  # espresso
    "rocket": 657,  # missile
    "camera": 872,  # tripod
}

_UNSUPPORTED_MODES = ("I", "F")  # 32-bit int/float; "I;16*" modes are caught by prefix


class ImageError(DataError):
    """An image source is missing or malformed: the folder, its labels file or one of its images."""


@dataclass(frozen=True)
class ImagePreprocessing:
    """How a photo becomes a model's input: shorter side to ``resize``, centre crop ``crop``, [0, 1],
    then ``(x - mean) / std`` per channel."""

    crop: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"  # PIL's antialiased filter: bilinear or bicubic

    def at(self, crop: int | None) -> ImagePreprocessing:
        """The same recipe at another crop size (None: this one), the resize scaled in proportion."""
        if crop is None or crop == self.crop:
            return self
        if isinstance(crop, bool) or not isinstance(crop, (int, np.integer)) or crop < 1:
            raise ValueError(f"size must be a positive int, got {crop!r}")
        return replace(self, crop=int(crop), resize=round(int(crop) * self.resize / self.crop))

    def valid_range(self) -> ValidRange:
        """Where the pixels [0, 1] land in the input space: ((0 - mean) / std, (1 - mean) / std) per channel."""
        return ValidRange(tuple((0 - m) / s for m, s in zip(self.mean, self.std)),
                          tuple((1 - m) / s for m, s in zip(self.mean, self.std)))

    def describe(self) -> str:
        """One line for captions and the README."""
        return (f"shorter side to {self.resize} ({self.interpolation}), centre crop {self.crop}, [0, 1], "
                f"(x - mean) / std with mean {list(self.mean)}, std {list(self.std)}")


INCEPTION_PREPROCESSING = ImagePreprocessing(crop=299, resize=342, mean=IMAGENET_MEAN, std=IMAGENET_STD)
_INTERPOLATION = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


@dataclass(frozen=True)
class ImageSet:
    """Images ready for the ImageNet model, with their labels and a displayable copy."""

    images: torch.Tensor  # (N, 3, S, S) float32, normalized by the recipe: the model's input space
    labels: torch.Tensor  # (N,) int64 ImageNet class index
    ids: list[str]  # file names (folder) or photo names (skimage), in order
    display: torch.Tensor  # (N, 3, S, S) float32 in [0, 1]: the same crop before normalization


# --------------------------------------------------------------------------- preprocessing


def preprocess(
    image: np.ndarray | PIL.Image.Image, size: int | None = None,
    recipe: ImagePreprocessing = INCEPTION_PREPROCESSING,
) -> torch.Tensor:
    """One image as a float32 (3, crop, crop) tensor in [0, 1]: ``recipe`` before normalization,
    at crop ``size`` when given (the resize scaled in proportion).

    ``image``: a PIL image, or an array of shape (H, W), (H, W, 1), (H, W, 2) (gray + alpha),
    (H, W, 3) or (H, W, 4) (RGBA) of dtype uint8, bool or float in [0, 1] (floats are rounded
    to 8 bits, as every other input is 8-bit). Grayscale is replicated to three channels; alpha
    is dropped, not composited.
    """
    recipe = recipe.at(size)
    if recipe.interpolation not in _INTERPOLATION:
        raise ValueError(f"interpolation {recipe.interpolation!r} is not one of {sorted(_INTERPOLATION)}")
    rgb = _rgb_image(image)
    rgb = TF.resize(rgb, [recipe.resize], interpolation=_INTERPOLATION[recipe.interpolation], antialias=True)
    rgb = TF.center_crop(rgb, [recipe.crop, recipe.crop])
    return TF.to_dtype(TF.pil_to_tensor(rgb), torch.float32, scale=True)


def normalize(
    images: torch.Tensor, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
) -> torch.Tensor:
    """``(x - mean) / std`` per channel (default: ImageNet's) of a (3, H, W) or (N, 3, H, W) tensor in [0, 1]."""
    if images.dim() not in (3, 4) or images.shape[-3] != 3:
        raise ValueError(f"expected a (3, H, W) or (N, 3, H, W) tensor, got shape {tuple(images.shape)}")
    mean_ = torch.tensor(mean, dtype=images.dtype, device=images.device).view(3, 1, 1)
    std_ = torch.tensor(std, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return (images - mean_) / std_


def _rgb_image(image: np.ndarray | PIL.Image.Image) -> PIL.Image.Image:
    """An 8-bit RGB PIL image: gray replicated, alpha dropped, palette expanded."""
    if isinstance(image, PIL.Image.Image):
        mode = image.mode
        if mode in _UNSUPPORTED_MODES or mode.startswith("I;16"):
            raise ValueError(f"unsupported PIL image mode {mode!r} (16-bit or floating point); convert it to 8-bit")
        if mode == "P":  # a palette with a transparent entry would warn when converted to RGB directly
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        return image if image.mode == "RGB" else image.convert("RGB")  # drops alpha, replicates gray
    if isinstance(image, np.ndarray):
        return PIL.Image.fromarray(_rgb_array(image), mode="RGB")
    raise TypeError(f"expected a numpy array or a PIL image, got {type(image).__name__}")


def _rgb_array(array: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 from a gray, gray + alpha, RGB or RGBA array of dtype uint8, bool or float in [0, 1]."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4) or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(
            f"expected an image array of shape (H, W) or (H, W, C) with C in 1..4 (channels last), got {array.shape}"
        )
    if array.shape[2] in (2, 4):  # gray + alpha, RGBA: drop alpha
        array = array[:, :, :-1]
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
            raise ValueError("a floating-point image array must hold finite values in [0, 1]")
        array = np.round(array * 255).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ValueError(f"expected an image array of dtype uint8, bool or float in [0, 1], got {array.dtype}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array)


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class FolderSource:
    """A folder of images and their labels: a labels file (None: ``<folder>/labels.json``) or a mapping."""

    folder: Path
    labels: str | os.PathLike | Mapping[str, object] | None = None


ImageSource = Union[str, os.PathLike, FolderSource]  # "skimage", a folder (with labels.json), a FolderSource


def load_images(
    source: ImageSource | Sequence[ImageSource] = "skimage",
    *,
    labels_file: str | os.PathLike | None = None,
    size: int | None = None,
    n_images: int | None = None,
    recipe: ImagePreprocessing = INCEPTION_PREPROCESSING,
) -> ImageSet:
    """The images of ``source``, preprocessed by ``recipe`` (at crop ``size`` when given).

    A source is ``"skimage"`` (scikit-image's bundled photos of :data:`SKIMAGE_PHOTOS`), a folder
    of images with a labels file (``labels_file``, default ``<folder>/labels.json``), or a
    :class:`FolderSource`; see the module docstring. A list of sources is read in order.
    ``n_images``: only the first n.
    """
    if n_images is not None and n_images < 1:
        raise ValueError(f"n_images must be >= 1 (or None for all), got {n_images}")
    sources = list(source) if isinstance(source, (list, tuple)) else [source]
    entries: list[tuple[str, int, Callable[[], object]]] = []
    where = []
    for item in sources:
        described, found = _source_entries(item, labels_file)
        where.append(described)
        entries += found
    if n_images is not None:
        if n_images > len(entries):
            raise ImageError(
                f"n_images is {n_images} but {' and '.join(where)} hold only {len(entries)} image(s); lower "
                f"n_images (config key imagenet.n_images) or add labelled images"
            )
        entries = entries[:n_images]
    display = torch.stack([preprocess(read(), size, recipe) for _, _, read in entries])
    labels = torch.tensor([label for _, label, _ in entries], dtype=torch.int64)
    return ImageSet(images=normalize(display, recipe.mean, recipe.std), labels=labels,
                    ids=[name for name, _, _ in entries], display=display)


def _source_entries(
    source: ImageSource, labels_file: str | os.PathLike | None,
) -> tuple[str, list[tuple[str, int, Callable[[], object]]]]:
    """What the source is (for messages), and its (id, class index, reader) entries in order."""
    if isinstance(source, str) and source == "skimage":
        return ("the 'skimage' source (scikit-image's bundled photos with an ImageNet class)",
                [(name, label, partial(_read_skimage, name)) for name, label in SKIMAGE_PHOTOS.items()])
    if not isinstance(source, FolderSource):
        source = FolderSource(Path(source), labels_file)
    folder = Path(source.folder)
    where, entries = _folder_entries(folder, source.labels)
    return where, [(name, label, partial(_read_file, folder / name)) for name, label in entries]


def _read_skimage(name: str) -> np.ndarray:
    import skimage.data

    try:
        return np.asarray(getattr(skimage.data, name)())
    except (AttributeError, OSError, ValueError, ImportError) as err:
        raise ImageError(
            f"scikit-image's bundled photo {name!r} could not be loaded ({err}); reinstall scikit-image "
            f"(>= 0.22), or set {_IMAGES_CONFIG_KEY} to a folder of images with a {_LABELS_FILE}"
        ) from err


def _read_file(path: Path) -> PIL.Image.Image:
    """The file as an 8-bit RGB PIL image, EXIF orientation applied."""
    try:
        with PIL.Image.open(path) as opened:
            opened.load()
            image = PIL.ImageOps.exif_transpose(opened)
    except (OSError, ValueError, SyntaxError, PIL.Image.DecompressionBombError) as err:
        raise ImageError(
            f"image file {path} could not be read ({err}); it is corrupt or not an image: replace it, "
            f"or remove its entry from the labels file"
        ) from err
    try:
        return _rgb_image(image)
    except ValueError as err:
        raise ImageError(f"image file {path}: {err}; save it as 8-bit RGB or grayscale") from err


def _folder_entries(
    folder: Path, labels_file: str | os.PathLike | Mapping[str, object] | None,
) -> tuple[str, list[tuple[str, int]]]:
    """Where the labels come from (for messages), and (file name, class index) of every labelled
    file, sorted by file name; labels checked, files checked to exist."""
    if not folder.is_dir():
        raise ImageError(
            f"image folder {folder} does not exist (config key '{_IMAGES_CONFIG_KEY}'); give 'skimage' for "
            f"scikit-image's bundled photos, or a folder holding the images and a {_LABELS_FILE} that maps "
            f"each file name to its ImageNet class index"
        )
    if isinstance(labels_file, Mapping):
        labels, labels_path, where = dict(labels_file), None, f"the built-in labels of {folder}"
    else:
        labels_path = folder / _LABELS_FILE if labels_file in (None, "") else Path(labels_file)
        labels, where = _read_labels(labels_path), f"labels file {labels_path}"
    entries: list[tuple[str, int]] = []
    for name in sorted(labels):
        index = _class_index(labels[name], name, where)
        path = folder / name
        if not path.is_file():
            raise ImageError(
                f"{where} lists {name!r}, but {path} does not exist: add the image, "
                f"or remove its entry from the labels file"
            )
        entries.append((name, index))
    if not entries:
        raise ImageError(f"{where} lists no images; map each image's file name to its class index")
    unlabelled = sorted(
        child.name for child in folder.iterdir()
        if child.is_file() and not child.name.startswith(".") and child.name not in labels
        and not (labels_path is not None and child.name == labels_path.name
                 and child.resolve() == labels_path.resolve())
    )
    if unlabelled:
        shown = ", ".join(unlabelled[:10]) + (f" and {len(unlabelled) - 10} more" if len(unlabelled) > 10 else "")
        log.warning("%d file(s) in %s have no label in %s and are ignored: %s",
                    len(unlabelled), folder, where, shown)
    return where, entries


def _read_labels(path: Path) -> dict[str, object]:
    if not path.is_file():
        raise ImageError(
            f"labels file {path} does not exist (config key '{_LABELS_CONFIG_KEY}'; default: {_LABELS_FILE} in "
            f"the image folder); provide a JSON object mapping each image's file name to its ImageNet class "
            f'index, e.g. {{"cat.jpg": 281}} or {{"cat.jpg": {{"index": 281}}}}'
        )
    try:
        with open(path, encoding="utf-8") as handle:
            labels = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ImageError(f"labels file {path} is not valid JSON ({err}); fix or regenerate it") from err
    if not isinstance(labels, dict):
        raise ImageError(
            f"labels file {path} holds a JSON {type(labels).__name__}, expected an object mapping file name "
            f"to ImageNet class index"
        )
    return labels


def _class_index(value: object, name: str, where: str) -> int:
    index = value.get("index") if isinstance(value, dict) else value
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < _NUM_CLASSES:
        raise ImageError(
            f"{where}: the label of {name!r} is {value!r}; expected an ImageNet class index, "
            f"an int in 0..{_NUM_CLASSES - 1}, or an object with such an \"index\""
        )
    return index

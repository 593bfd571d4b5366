"""Natural images for the ImageNet model (torchvision's Inception v3): loading and the one
preprocessing path.

Preprocessing (:func:`preprocess`, then :func:`normalize`) is torchvision's
``Inception_V3_Weights.IMAGENET1K_V1.transforms()`` scaled to ``size``: the image becomes 8-bit
RGB (grayscale replicated to three channels, an alpha channel dropped, a palette expanded), its
shorter side is resized to ``round(size * 342 / 299)`` (342 for 299) with PIL's antialiased
bilinear filter, the centre ``size`` x ``size`` square is cropped, and the pixels are scaled to
[0, 1]; :func:`normalize` then subtracts the ImageNet mean and divides by its standard
deviation. That normalized tensor is the model's input space; the model itself applies
torchvision's ``transform_input`` (:mod:`saliency_sanity.inception`), nothing here does. At
``size=299`` the result equals torchvision's transform exactly (tested).

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

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

# torchvision's Inception v3 preset: resize to 342, centre crop 299.
_REFERENCE_CROP = 299
_REFERENCE_RESIZE = 342
_UNSUPPORTED_MODES = ("I", "F")  # 32-bit int/float; "I;16*" modes are caught by prefix


class ImageError(DataError):
    """An image source is missing or malformed: the folder, its labels file or one of its images."""


@dataclass(frozen=True)
class ImageSet:
    """Images ready for the ImageNet model, with their labels and a displayable copy."""

    images: torch.Tensor  # (N, 3, S, S) float32, ImageNet-normalized: the model's input space
    labels: torch.Tensor  # (N,) int64 ImageNet class index
    ids: list[str]  # file names (folder) or photo names (skimage), in order
    display: torch.Tensor  # (N, 3, S, S) float32 in [0, 1]: the same crop before normalization


# --------------------------------------------------------------------------- preprocessing


def preprocess(image: np.ndarray | PIL.Image.Image, size: int = 299) -> torch.Tensor:
    """One image as a float32 (3, size, size) tensor in [0, 1]: torchvision's Inception v3
    preprocessing before normalization (shorter side to ``round(size * 342 / 299)``, antialiased
    bilinear; centre crop ``size``).

    ``image``: a PIL image, or an array of shape (H, W), (H, W, 1), (H, W, 2) (gray + alpha),
    (H, W, 3) or (H, W, 4) (RGBA) of dtype uint8, bool or float in [0, 1] (floats are rounded
    to 8 bits, as every other input is 8-bit). Grayscale is replicated to three channels; alpha
    is dropped, not composited.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    size = int(size)
    rgb = _rgb_image(image)
    resize = round(size * _REFERENCE_RESIZE / _REFERENCE_CROP)
    rgb = TF.resize(rgb, [resize], interpolation=InterpolationMode.BILINEAR, antialias=True)
    rgb = TF.center_crop(rgb, [size, size])
    return TF.to_dtype(TF.pil_to_tensor(rgb), torch.float32, scale=True)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """ImageNet normalization, ``(x - mean) / std`` per channel, of a (3, H, W) or (N, 3, H, W) tensor in [0, 1]."""
    if images.dim() not in (3, 4) or images.shape[-3] != 3:
        raise ValueError(f"expected a (3, H, W) or (N, 3, H, W) tensor, got shape {tuple(images.shape)}")
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return (images - mean) / std


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


def load_images(
    source: str | os.PathLike = "skimage",
    *,
    labels_file: str | os.PathLike | None = None,
    size: int = 299,
    n_images: int | None = None,
) -> ImageSet:
    """The images of ``source``, preprocessed: ``"skimage"`` (scikit-image's bundled photos of
    :data:`SKIMAGE_PHOTOS`) or a folder of images with a labels file (default
    ``<folder>/labels.json``); see the module docstring. ``n_images``: only the first n."""
    if n_images is not None and n_images < 1:
        raise ValueError(f"n_images must be >= 1 (or None for all), got {n_images}")
    if isinstance(source, str) and source == "skimage":
        entries = list(SKIMAGE_PHOTOS.items())
        where = "the 'skimage' source (scikit-image's bundled photos with an ImageNet class)"
        read = _read_skimage
    else:
        folder = Path(source)
        labels_path, entries = _folder_entries(folder, labels_file)
        where = f"labels file {labels_path}"

        def read(name: str) -> PIL.Image.Image:
            return _read_file(folder / name)

    if n_images is not None:
        if n_images > len(entries):
            raise ImageError(
                f"n_images is {n_images} but {where} has only {len(entries)} image(s); lower n_images "
                f"(config key imagenet.n_images) or add labelled images"
            )
        entries = entries[:n_images]
    display = torch.stack([preprocess(read(name), size) for name, _ in entries])
    labels = torch.tensor([label for _, label in entries], dtype=torch.int64)
    return ImageSet(images=normalize(display), labels=labels, ids=[name for name, _ in entries], display=display)


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


def _folder_entries(folder: Path, labels_file: str | os.PathLike | None) -> tuple[Path, list[tuple[str, int]]]:
    """The labels file, and (file name, class index) of every labelled file, sorted by file name;
    labels checked, files checked to exist."""
    if not folder.is_dir():
        raise ImageError(
            f"image folder {folder} does not exist (config key '{_IMAGES_CONFIG_KEY}'); give 'skimage' for "
            f"scikit-image's bundled photos, or a folder holding the images and a {_LABELS_FILE} that maps "
            f"each file name to its ImageNet class index"
        )
    labels_path = folder / _LABELS_FILE if labels_file in (None, "") else Path(labels_file)
    labels = _read_labels(labels_path)
    entries: list[tuple[str, int]] = []
    for name in sorted(labels):
        index = _class_index(labels[name], name, labels_path)
        path = folder / name
        if not path.is_file():
            raise ImageError(
                f"labels file {labels_path} lists {name!r}, but {path} does not exist: add the image, "
                f"or remove its entry from the labels file"
            )
        entries.append((name, index))
    if not entries:
        raise ImageError(f"labels file {labels_path} lists no images; map each image's file name to its class index")
    unlabelled = sorted(
        child.name for child in folder.iterdir()
        if child.is_file() and not child.name.startswith(".") and child.name not in labels
        and not (child.name == labels_path.name and child.resolve() == labels_path.resolve())
    )
    if unlabelled:
        shown = ", ".join(unlabelled[:10]) + (f" and {len(unlabelled) - 10} more" if len(unlabelled) > 10 else "")
        log.warning("%d file(s) in %s have no label in %s and are ignored: %s",
                    len(unlabelled), folder, labels_path, shown)
    return labels_path, entries


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


def _class_index(value: object, name: str, labels_path: Path) -> int:
    index = value.get("index") if isinstance(value, dict) else value
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < _NUM_CLASSES:
        raise ImageError(
            f"labels file {labels_path}: the label of {name!r} is {value!r}; expected an ImageNet class index, "
            f"an int in 0..{_NUM_CLASSES - 1}, or an object with such an \"index\""
        )
    return index

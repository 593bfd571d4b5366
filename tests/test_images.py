"""Natural images for the ImageNet model: preprocessing, normalization and both sources."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from torchvision.models import Inception_V3_Weights

from saliency_sanity.data import DataError
from saliency_sanity.data.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SKIMAGE_PHOTOS,
    ImageError,
    ImageSet,
    load_images,
    normalize,
    preprocess,
)

MIRROR_IMAGES = Path("/work/shared/data/imagenet/images")
CLASS_INDEX = Path("/work/shared/data/imagenet/imagenet_class_index.json")
MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("size", [299, 107])
def test_preprocess_shape_dtype_and_range(size):
    image = random_rgb(200, 330)
    image[:, :165] = 0
    image[:, 165:] = np.maximum(image[:, 165:], 200)  # black left half, bright right half
    x = preprocess(image, size=size)
    assert x.shape == (3, size, size)
    assert x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    assert x[:, :, : size // 3].max() == 0 and x[:, :, -size // 3 :].min() > 0.75  # scaled by 1/255


@pytest.mark.parametrize("size", [299, 107])
def test_preprocess_is_torchvisions_inception_transform(size):
    image = PIL.Image.fromarray(random_rgb(240, 410, seed=1))
    reference = Inception_V3_Weights.IMAGENET1K_V1.transforms(crop_size=size, resize_size=round(size * 342 / 299))
    torch.testing.assert_close(normalize(preprocess(image, size)), reference(image), rtol=0, atol=1e-5)


def test_normalize_round_trip_and_shapes():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    z = normalize(x)
    torch.testing.assert_close(z * STD + MEAN, x)
    torch.testing.assert_close(normalize(x[0]), z[0])  # a single (3, H, W) image too
    mean_image = MEAN.expand(3, 4, 4)
    torch.testing.assert_close(normalize(mean_image), torch.zeros(3, 4, 4))
    torch.testing.assert_close(normalize(mean_image + STD), torch.ones(3, 4, 4))
    with pytest.raises(ValueError, match="shape"):
        normalize(torch.rand(1, 8, 8))


def test_grayscale_is_replicated_to_three_channels():
    gray = random_rgb(120, 150)[:, :, 0]
    x = preprocess(gray, size=64)
    assert x.shape == (3, 64, 64)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    assert torch.equal(x, preprocess(rgb, size=64))
    assert torch.equal(x, preprocess(gray[:, :, None], size=64))
    assert torch.equal(x, preprocess(PIL.Image.fromarray(gray, mode="L"), size=64))


def test_alpha_is_dropped():
    rgb = random_rgb(90, 70)
    alpha = np.random.default_rng(5).integers(0, 256, size=(90, 70, 1), dtype=np.uint8)
    expected = preprocess(rgb, size=48)
    rgba = np.concatenate([rgb, alpha], axis=2)
    assert torch.equal(preprocess(rgba, size=48), expected)
    assert torch.equal(preprocess(PIL.Image.fromarray(rgba, mode="RGBA"), size=48), expected)
    gray = rgb[:, :, :1]
    la = np.concatenate([gray, alpha], axis=2)
    assert torch.equal(preprocess(la, size=48), preprocess(gray, size=48))
    assert torch.equal(preprocess(PIL.Image.fromarray(la, mode="LA"), size=48), preprocess(gray, size=48))


def test_palette_image_with_transparency():
    rgb = random_rgb(40, 50)
    palette = PIL.Image.fromarray(rgb).quantize(16)
    palette.info["transparency"] = 0
    x = preprocess(palette, size=32)
    assert torch.equal(x, preprocess(np.asarray(palette.convert("RGB")), size=32))


def test_bool_and_float_arrays():
    mask = np.zeros((60, 60), dtype=bool)
    mask[:, 30:] = True
    x = preprocess(mask, size=32)
    assert x[:, :, 0].max() == 0 and x[:, :, -1].min() == 1
    rgb = random_rgb(50, 50)
    assert torch.equal(preprocess(rgb.astype(np.float64) / 255, size=32), preprocess(rgb, size=32))


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((20, 20, 3), 1.5), r"\[0, 1\]"),
        (np.zeros((20, 20, 3), dtype=np.uint16), "dtype"),
        (np.zeros((3, 20, 20), dtype=np.uint8), "channels last"),
        (np.zeros((20, 20, 5), dtype=np.uint8), "shape"),
    ],
)
def test_bad_arrays_are_refused(array, message):
    with pytest.raises(ValueError, match=message):
        preprocess(array, size=16)


def test_bad_size_and_type():
    with pytest.raises(ValueError, match="size"):
        preprocess(random_rgb(10, 10), size=0)
    with pytest.raises(TypeError):
        preprocess(torch.zeros(3, 10, 10))


@pytest.mark.parametrize("height, width", [(400, 800), (800, 400)])
def test_centre_crop_keeps_the_centre_and_the_aspect_ratio(height, width):
    """A 200 px red square at the centre of a grey image, blue bands at the far ends of the long side.

    Shorter side 400 -> 342 (scale 0.855): the square becomes about 171 px, still square and
    centred; the long side becomes 684 and the crop keeps its middle 299, cutting the bands.
    """
    image = np.full((height, width, 3), 128, dtype=np.uint8)
    cy, cx = height // 2, width // 2
    image[cy - 100 : cy + 100, cx - 100 : cx + 100] = (255, 0, 0)
    if width > height:
        image[:, :80] = image[:, -80:] = (0, 0, 255)
    else:
        image[:80] = image[-80:] = (0, 0, 255)
    x = preprocess(image, size=299)
    red = (x[0] > 0.75) & (x[1] < 0.25) & (x[2] < 0.25)
    rows = red.any(dim=1).nonzero().flatten()
    cols = red.any(dim=0).nonzero().flatten()
    assert red[149, 149]
    assert abs(len(rows) - 171) <= 2 and abs(len(cols) - 171) <= 2  # square stays square
    assert abs((rows[0] + rows[-1]) / 2 - 149) <= 1 and abs((cols[0] + cols[-1]) / 2 - 149) <= 1
    assert not ((x[2] > 0.75) & (x[0] < 0.25)).any()  # the blue bands are cropped away


# --------------------------------------------------------------------------- scikit-image photos


def test_skimage_default_set():
    images = load_images()
    n = len(SKIMAGE_PHOTOS)
    assert isinstance(images, ImageSet)
    assert images.ids == list(SKIMAGE_PHOTOS)
    assert images.labels.dtype == torch.int64
    assert images.labels.tolist() == list(SKIMAGE_PHOTOS.values())
    assert images.images.shape == images.display.shape == (n, 3, 299, 299)
    assert images.images.dtype == images.display.dtype == torch.float32
    assert 0 <= images.display.min() and images.display.max() <= 1
    torch.testing.assert_close(images.images, normalize(images.display))
    assert images.display.flatten(1).std(dim=1).min() > 0.05  # real photos, not blank crops


def test_skimage_mapping_is_documented_and_uses_the_standard_class_order():
    import saliency_sanity.data.images as module

    assert SKIMAGE_PHOTOS == {"chelsea": 281, "coffee": 967, "rocket": 657, "camera": 872}
    for photo in SKIMAGE_PHOTOS:
        assert photo in module.__doc__
    if CLASS_INDEX.is_file():
        names = {int(k): v[1] for k, v in json.loads(CLASS_INDEX.read_text()).items()}
        assert [names[i] for i in SKIMAGE_PHOTOS.values()] == ["tabby", "espresso", "missile", "tripod"]


def test_skimage_subset_size_and_count():
    images = load_images("skimage", size=75, n_images=2)
    assert images.ids == list(SKIMAGE_PHOTOS)[:2]
    assert images.images.shape == (2, 3, 75, 75)
    with pytest.raises(ImageError, match=f"only {len(SKIMAGE_PHOTOS)} image"):
        load_images("skimage", n_images=len(SKIMAGE_PHOTOS) + 1)
    with pytest.raises(ValueError, match="n_images"):
        load_images("skimage", n_images=0)


# --------------------------------------------------------------------------- folders


@pytest.fixture
def folder(tmp_path) -> Path:
    """b.png (RGB), a.jpg (RGB), c.png (grayscale), notes.txt (no label); labels.json written by each test."""
    PIL.Image.fromarray(random_rgb(120, 160, seed=2)).save(tmp_path / "b.png")
    PIL.Image.fromarray(random_rgb(100, 90, seed=3)).save(tmp_path / "a.jpg", quality=90)
    PIL.Image.fromarray(random_rgb(80, 80, seed=4)[:, :, 0], mode="L").save(tmp_path / "c.png")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def write_labels(path: Path, labels: dict) -> Path:
    path.write_text(json.dumps(labels))
    return path


@pytest.mark.parametrize("wrap", [lambda i: i, lambda i: {"index": i, "wnid": "n0", "name": "x"}], ids=["int", "object"])
def test_folder_loads_labelled_files_sorted(folder, wrap, caplog):
    write_labels(folder / "labels.json", {"c.png": wrap(5), "b.png": wrap(999), "a.jpg": wrap(0)})
    with caplog.at_level(logging.WARNING, logger="saliency_sanity.data.images"):
        images = load_images(str(folder), size=64)
    assert images.ids == ["a.jpg", "b.png", "c.png"]
    assert images.labels.tolist() == [0, 999, 5]
    assert images.images.shape == images.display.shape == (3, 3, 64, 64)
    assert torch.equal(images.display[1], preprocess(random_rgb(120, 160, seed=2), size=64))  # PNG: lossless
    assert torch.equal(images.display[2][0], images.display[2][1])  # grayscale file replicated
    torch.testing.assert_close(images.images, normalize(images.display))
    assert "notes.txt" in caplog.text
    assert "labels.json" not in caplog.text.split("ignored")[-1]  # the labels file itself is no stray file


def test_folder_with_labels_file_elsewhere_and_subset(folder, tmp_path_factory):
    labels = write_labels(tmp_path_factory.mktemp("meta") / "my-labels.json", {"b.png": 1, "c.png": 2, "a.jpg": 3})
    images = load_images(folder, labels_file=labels, size=32, n_images=2)
    assert images.ids == ["a.jpg", "b.png"]
    assert images.labels.tolist() == [3, 1]


def test_missing_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ImageError, match="imagenet.images") as err:
        load_images(str(missing))
    assert str(missing) in str(err.value) and "labels.json" in str(err.value)
    assert isinstance(err.value, DataError)


def test_missing_labels_file(folder):
    with pytest.raises(ImageError, match="imagenet.labels") as err:
        load_images(folder)
    assert str(folder / "labels.json") in str(err.value)
    with pytest.raises(ImageError, match="other.json"):
        load_images(folder, labels_file=folder / "other.json")


def test_invalid_json(folder):
    (folder / "labels.json").write_text('{"a.jpg": 1,')
    with pytest.raises(ImageError, match="not valid JSON") as err:
        load_images(folder)
    assert str(folder / "labels.json") in str(err.value)


def test_labels_not_an_object(folder):
    write_labels(folder / "labels.json", [1, 2])
    with pytest.raises(ImageError, match="expected an object"):
        load_images(folder)


def test_empty_labels(folder):
    write_labels(folder / "labels.json", {})
    with pytest.raises(ImageError, match="no images"):
        load_images(folder)


def test_missing_labelled_file(folder):
    write_labels(folder / "labels.json", {"a.jpg": 1, "gone.png": 2})
    with pytest.raises(ImageError, match="gone.png") as err:
        load_images(folder)
    assert str(folder / "gone.png") in str(err.value)


@pytest.mark.parametrize("content", [b"not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40], ids=["text", "truncated-png"])
def test_corrupt_image_file(folder, content):
    (folder / "broken.png").write_bytes(content)
    write_labels(folder / "labels.json", {"a.jpg": 1, "broken.png": 2})
    with pytest.raises(ImageError, match="broken.png") as err:
        load_images(folder)
    assert str(folder / "broken.png") in str(err.value)


def test_truncated_jpeg(folder):
    data = (folder / "a.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    write_labels(folder / "labels.json", {"cut.jpg": 1})
    with pytest.raises(ImageError, match="cut.jpg"):
        load_images(folder)


def test_sixteen_bit_image_is_refused(folder):
    PIL.Image.fromarray(np.full((20, 20), 40000, dtype=np.uint16)).save(folder / "deep.png")
    assert PIL.Image.open(folder / "deep.png").mode.startswith("I")
    write_labels(folder / "labels.json", {"deep.png": 1})
    with pytest.raises(ImageError, match="deep.png.*8-bit"):
        load_images(folder)


@pytest.mark.parametrize("value", [-1, 1000, "5", 3.0, True, None, {"name": "tabby"}, {"index": 1000}])
def test_bad_label_value(folder, value):
    write_labels(folder / "labels.json", {"a.jpg": 1, "b.png": value})
    with pytest.raises(ImageError, match="b.png") as err:
        load_images(folder)
    assert repr(value) in str(err.value) and str(folder / "labels.json") in str(err.value)


def test_n_images_larger_than_the_folder(folder):
    write_labels(folder / "labels.json", {"a.jpg": 1, "b.png": 2})
    with pytest.raises(ImageError, match="only 2 image") as err:
        load_images(folder, n_images=3)
    assert str(folder / "labels.json") in str(err.value)
    with pytest.raises(ValueError, match="n_images"):
        load_images(folder, n_images=0)


@pytest.mark.skipif(not (MIRROR_IMAGES / "labels.json").is_file(), reason="no ImageNet image mirror on this machine")
def test_mirror_folder():
    labels = json.loads((MIRROR_IMAGES / "labels.json").read_text())
    images = load_images(MIRROR_IMAGES)
    assert len(images.ids) == 7
    assert images.ids == sorted(labels)
    assert images.labels.tolist() == [labels[name]["index"] for name in images.ids]
    assert images.images.shape == (7, 3, 299, 299)
    assert 0 <= images.display.min() and images.display.max() <= 1

"""load_image (modes, EXIF, refusals), frame removal, draft-mode resize and the resize cache."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from lesions.isic import load_isic2019
from lesions.preprocess import (
    ImageLoadError,
    build_cache,
    crop_frame,
    frame_box,
    load_image,
    resize_short_side,
)
from lesions.synth import generate

SKIN = (200, 150, 130)


def _encoded(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _rgb(size=(20, 16), color=SKIN) -> Image.Image:
    return Image.new("RGB", size, color)


@pytest.mark.parametrize("mode", ["CMYK", "L", "LA", "P", "RGBA", "RGB", "YCbCr", "1"])
def test_every_pillow_mode_becomes_rgb(mode):
    img = load_image(_rgb().convert(mode))
    assert img.mode == "RGB" and img.size == (20, 16)


@pytest.mark.parametrize(
    ("fmt", "mode"), [("PNG", "RGBA"), ("PNG", "LA"), ("PNG", "P"), ("TIFF", "CMYK"), ("PNG", "L")]
)
def test_encoded_modes_keep_their_colour(fmt, mode):
    source = _rgb().convert(mode, palette=Image.Palette.ADAPTIVE) if mode == "P" else _rgb()
    img = load_image(_encoded(source.convert(mode), fmt))
    assert img.mode == "RGB"
    gray = round(0.299 * SKIN[0] + 0.587 * SKIN[1] + 0.114 * SKIN[2])
    expected = (gray,) * 3 if mode in ("L", "LA") else SKIN
    assert np.abs(np.subtract(img.getpixel((3, 3)), expected)).max() <= 3


def test_transparency_is_composited_over_white():
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert load_image(rgba).getpixel((0, 0)) == (255, 255, 255)


def test_16_bit_png_is_scaled_to_8_bit():
    ramp = np.linspace(0, 65535, 32 * 16).reshape(16, 32).astype(np.uint16)
    data = _encoded(Image.fromarray(ramp), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = np.asarray(load_image(data))
    assert out.dtype == np.uint8 and out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    assert abs(int(out[8, 16, 0]) - round(ramp[8, 16] / 257)) <= 1


def test_int32_and_float_modes():
    assert load_image(Image.fromarray(np.full((9, 9), 65535, np.int32))).getpixel((0, 0)) == (
        255,
        255,
        255,
    )
    assert load_image(Image.fromarray(np.full((9, 9), 0.5, np.float32))).getpixel((0, 0)) == (
        128,
        128,
        128,
    )


@pytest.mark.parametrize(
    ("array", "pixel"),
    [
        (np.full((10, 12, 3), 7, np.uint8), (7, 7, 7)),
        (np.full((10, 12), 65535, np.uint16), (255, 255, 255)),
        (np.ones((10, 12, 1), np.float32), (255, 255, 255)),
        (np.ones((10, 12), bool), (255, 255, 255)),
        (np.zeros((10, 12, 4), np.uint8), (255, 255, 255)),  # fully transparent
    ],
)
def test_numpy_arrays(array, pixel):
    img = load_image(array)
    assert img.size == (12, 10) and img.getpixel((0, 0)) == pixel


def test_exif_orientation_is_applied():
    img = _rgb((40, 20))
    img.paste((0, 0, 0), (0, 0, 10, 10))  # dark top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    loaded = load_image(_encoded(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert loaded.size == (20, 40)
    assert sum(loaded.getpixel((15, 3))) < 60  # the dark corner is now top-right


def test_first_frame_of_an_animation():
    frames = [_rgb((16, 16), (255, 0, 0)), _rgb((16, 16), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert load_image(buffer.getvalue()).getpixel((5, 5))[0] > 200


def test_paths_and_file_objects(tmp_path):
    path = tmp_path / "x.png"
    _rgb().save(path)
    assert load_image(path).size == load_image(str(path)).size == (20, 16)
    with open(path, "rb") as handle:
        assert load_image(handle).size == (20, 16)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(b"not an image at all"), "not an image"),
        (lambda p: p.write_bytes(_encoded(_rgb((64, 64)), "JPEG")[:300]), "truncated"),
        (lambda p: p.write_bytes(_encoded(_rgb((7, 50)), "PNG")), "smaller than 8 px"),
        (lambda p: None, "no such file"),
    ],
)
def test_bad_files_raise_image_load_error(tmp_path, make, message):
    path = tmp_path / "bad.jpg"
    make(path)
    with pytest.raises(ImageLoadError, match=message):
        load_image(path)


def test_decompression_bombs_are_refused_before_decoding():
    data = _encoded(_rgb((400, 300)), "PNG")
    with pytest.raises(ImageLoadError, match="exceeds max_pixels=100,000"):
        load_image(data, max_pixels=100_000)
    assert load_image(data, max_pixels=120_000).size == (400, 300)


def test_bad_inputs_are_value_or_type_errors():
    assert issubclass(ImageLoadError, ValueError)
    with pytest.raises(ImageLoadError, match="empty bytes"):
        load_image(b"")
    with pytest.raises(ImageLoadError, match="shape"):
        load_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(TypeError, match="int"):
        load_image(3)
    with pytest.raises(TypeError):
        crop_frame(np.zeros((10, 10, 3)))


def _framed(width: int, height: int, radius: int) -> Image.Image:
    """Textured skin inside a black circle (a dermoscope frame) centred on the image."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:height, :width]
    skin = np.clip(np.array(SKIN) + rng.normal(0, 8, (height, width, 3)), 0, 255).astype(np.uint8)
    skin[np.hypot(yy - height / 2, xx - width / 2) > radius] = (3, 2, 2)
    return Image.fromarray(skin)


def test_frame_removal_on_a_1024_px_image_with_a_black_circular_border():
    cropped = crop_frame(_framed(1024, 1024, 450))
    side = 450 * np.sqrt(2)
    assert abs(cropped.width - side) < 0.05 * side and abs(cropped.height - side) < 0.05 * side
    dark = (np.asarray(cropped).sum(axis=2) < 60).mean()
    assert dark == 0.0


def test_frame_clipped_by_the_image_edges():
    # 1024x768 with a circle of radius 600: the top and bottom edges cut it, so the box takes
    # the full height and the width of the circle's chord there (radius shrunk by 3 %).
    box = frame_box(_framed(1024, 768, 600))
    assert box is not None
    left, upper, right, lower = box
    assert upper <= 8 and lower >= 760
    chord = 2 * np.sqrt((0.97 * 600) ** 2 - 384**2)
    assert abs((right - left) - chord) < 0.03 * chord
    assert abs((left + right) / 2 - 512) < 8


def test_no_frame_means_no_crop():
    img = _rgb((300, 200))
    assert frame_box(img) is None and crop_frame(img) is img
    dark_lesion = _rgb((300, 200))
    dark_lesion.paste((0, 0, 0), (100, 50, 200, 150))
    assert frame_box(dark_lesion) is None


def test_resize_short_side_uses_draft_mode_for_jpeg(tmp_path):
    path = tmp_path / "big.jpg"
    _framed(1024, 768, 2000).save(path, quality=90)
    out = resize_short_side(path, 256)
    assert out.size == (341, 256) and out.mode == "RGB"
    # Draft mode decodes at 1/2 scale (512x384), never the full 1024x768.
    with Image.open(path) as img:
        img.draft("RGB", (342, 256))
        assert img.size == (512, 384)
    assert resize_short_side(_rgb((100, 40)), 20).size == (50, 20)
    with pytest.raises(ValueError, match="size"):
        resize_short_side(path, 0)


def test_build_cache_crops_images_and_masks_alike_and_reports_skips(tmp_path):
    img = _framed(400, 400, 180)
    img.save(tmp_path / "a.jpg", quality=95)
    mask = np.zeros((400, 400), np.uint8)
    mask[150:250, 150:250] = 255  # a centred square lesion
    Image.fromarray(mask).save(tmp_path / "a_mask.png")
    (tmp_path / "broken.jpg").write_bytes(_encoded(_rgb((64, 64)), "JPEG")[:200])
    items = [
        ("a", tmp_path / "a.jpg", tmp_path / "a_mask.png"),
        ("broken", tmp_path / "broken.jpg", None),
    ]
    report = build_cache(items, tmp_path / "cache", size=64)
    assert set(report.entries) == {"a"} and set(report.skipped) == {"broken"}
    assert "truncated" in report.skipped["broken"]
    saved = json.loads(report.report_path.read_text())
    assert saved["cached"] == 1 and saved["skipped"] == 1 and "broken" in saved["skipped_reasons"]
    cached_img = Image.open(report.entries["a"][0])
    cached_mask = np.asarray(Image.open(report.entries["a"][1]))
    assert cached_img.size == cached_mask.shape[::-1] == (64, 64)
    assert (np.asarray(cached_img).sum(axis=2) < 60).mean() == 0  # frame gone
    assert set(np.unique(cached_mask).tolist()) == {0, 255}
    # The crop keeps the square's centre and scales it by 64 / (crop side ≈ 247).
    ys, xs = np.nonzero(cached_mask)
    assert abs(ys.mean() - 31.5) < 1.5 and abs(xs.mean() - 31.5) < 1.5
    assert abs(np.sqrt(cached_mask.mean() / 255) * 64 - 100 * 64 / 247) < 2.5
    # A second build reuses the entries; other settings are refused.
    again = build_cache(items[:1], tmp_path / "cache", size=64)
    assert again.entries == {"a": report.entries["a"]}
    with pytest.raises(ValueError, match="another cache_dir"):
        build_cache(items, tmp_path / "cache", size=32)
    with pytest.raises(ValueError, match="num_proc"):
        build_cache(items, tmp_path / "other", num_proc=0)


def test_load_isic2019_from_the_cache_in_parallel(tmp_path):
    data_dir = generate(tmp_path / "synth", 24, seed=4, image_size=128)
    (data_dir / "ISIC_2019_Training_Input" / "ISIC_0000003.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.warns(UserWarning, match="1 unreadable images skipped"):
        data = load_isic2019(data_dir, image_size=64, num_proc=2, cache_dir=tmp_path / "c")
    ids = list(data["train"]["image_id"]) + list(data["validation"]["image_id"])
    assert len(ids) == 23 and "ISIC_0000003" not in ids
    row = data["train"][0]
    assert min(row["image"].size) == 64 and row["image"].size == row["mask"].size
    assert (
        str(tmp_path / "c") in data["train"].cast_column("image", _no_decode())[0]["image"]["path"]
    )


def _no_decode():
    from datasets import Image as ImageFeature

    return ImageFeature(decode=False)

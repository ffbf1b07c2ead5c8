import errno
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from stoneseg_core.errors import ImageReadError, MaskError
from stoneseg_core.io.images import (
    binarize_mask,
    image_size,
    list_images,
    read_image,
    read_mask,
    write_mask,
)


def gradient(h=20, w=30):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 8, y * 12, np.full_like(x, 77)], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif"])
def test_lossless_formats_round_trip_as_rgb(tmp_path, ext):
    rgb = gradient()
    path = tmp_path / f"a{ext}"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    np.testing.assert_array_equal(out, rgb)


def test_jpeg_reads_as_rgb_not_bgr(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 250  # pure red
    path = tmp_path / "red.jpg"
    Image.fromarray(rgb).save(path, quality=95)
    out = read_image(path)
    assert out[..., 0].mean() > 240 and out[..., 2].mean() < 15


def test_grey_and_rgba_become_rgb(tmp_path):
    grey = np.arange(200, dtype=np.uint8).reshape(10, 20)
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    g = read_image(tmp_path / "g.png")
    assert g.shape == (10, 20, 3)
    np.testing.assert_array_equal(g[..., 0], grey)
    rgba = np.dstack([gradient(10, 20), np.full((10, 20), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    a = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(a, rgba[..., :3])


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16_bit_images_are_stretched_not_truncated(tmp_path, ext):
    # 12-bit camera data in a 16-bit file: dividing by 257 would make it almost black
    data = (np.linspace(0, 4095, 40 * 50).reshape(40, 50)).astype(np.uint16)
    rgb16 = np.dstack([data, data // 2, data // 4])
    cv2.imwrite(str(tmp_path / f"c{ext}"), rgb16[..., ::-1])
    out = read_image(tmp_path / f"c{ext}")
    assert out.dtype == np.uint8 and out.shape == (40, 50, 3)
    assert out[..., 0].max() >= 250 and out[..., 0].min() <= 5
    assert np.all(np.diff(out[20, :, 0].astype(int)) >= 0)  # order kept
    grey16 = data.copy()
    cv2.imwrite(str(tmp_path / f"g{ext}"), grey16)
    assert read_image(tmp_path / f"g{ext}").max() >= 250


def test_exif_orientation_is_applied(tmp_path):
    # stored landscape 30x20 with a red top-left corner; orientation 6 = rotate 90 clockwise
    rgb = np.full((20, 30, 3), 255, np.uint8)
    rgb[:5, :5] = (255, 0, 0)
    im = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rot.jpg"
    im.save(path, exif=exif.tobytes(), quality=95)
    out = read_image(path)
    assert out.shape == (30, 20, 3)  # displayed portrait
    # top-left of the stored image ends up top-right after a clockwise turn
    assert out[:4, -4:, 0].mean() > 200 and out[:4, -4:, 1].mean() < 60
    assert image_size(path) == (20, 30)


def test_bad_files_raise_clear_errors_naming_the_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image at all")
    good = tmp_path / "good.jpg"
    Image.fromarray(gradient(64, 64)).save(good, quality=90)
    data = good.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    for name, words in [
        ("empty.jpg", "empty"),
        ("text.png", "damaged"),
        ("cut.jpg", "truncated"),
        ("gone.jpg", "not found"),
    ]:
        with pytest.raises(ImageReadError) as err:
            read_image(tmp_path / name)
        assert name in str(err.value) and words in str(err.value)


def test_list_images_natural_order_and_filters(tmp_path):
    for n in ["10.jpg", "2.JPG", "1.png", "notes.txt", ".hidden.png", "b.tiff"]:
        (tmp_path / n).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["1.png", "2.JPG", "10.jpg", "b.tiff"]


@pytest.mark.parametrize(
    "raw, expected",
    [
        (np.array([[0, 1], [1, 0]], np.uint8), [[0, 255], [255, 0]]),
        (np.array([[0, 100], [200, 255]], np.uint8), [[0, 0], [255, 255]]),  # anti-aliased
        (np.array([[0, 30000], [65535, 100]], np.uint16), [[0, 0], [255, 0]]),
    ],
)
def test_mask_encodings_binarize(raw, expected):
    np.testing.assert_array_equal(binarize_mask(raw), np.array(expected, np.uint8))


def test_rgb_mask_is_thresholded(tmp_path):
    m = np.zeros((4, 4, 3), np.uint8)
    m[1:3, 1:3] = (255, 0, 0)  # red = stone in some tools
    cv2.imwrite(str(tmp_path / "m.png"), m)
    out = read_mask(tmp_path / "m.png", expected_size=(4, 4))
    assert out.sum() == 4 * 255 and set(np.unique(out)) == {0, 255}


def test_wrong_size_mask_is_an_error(tmp_path):
    cv2.imwrite(str(tmp_path / "m.png"), np.zeros((10, 12), np.uint8))
    with pytest.raises(MaskError, match=r"12x10 .* 30x20"):
        read_mask(tmp_path / "m.png", expected_size=(20, 30))


def test_write_mask_writes_0_255_png_atomically(tmp_path):
    path = tmp_path / "masks" / "a.png"
    m = np.zeros((5, 6), bool)
    m[1:3, 2:5] = True
    write_mask(path, m)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint8 and raw.ndim == 2 and set(np.unique(raw)) == {0, 255}
    assert (raw > 0).sum() == 6
    assert [p.name for p in path.parent.iterdir()] == ["a.png"]  # no temporary left behind


@pytest.mark.parametrize(
    "code, words", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only")]
)
def test_failed_write_keeps_old_mask_and_says_why(tmp_path, monkeypatch, code, words):
    path = tmp_path / "a.png"
    old = np.full((4, 4), 255, np.uint8)
    write_mask(path, old)

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(MaskError, match=words):
        write_mask(path, np.zeros((4, 4), np.uint8))
    monkeypatch.undo()
    np.testing.assert_array_equal(read_mask(path), old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_real_dev_photos_and_masks_agree_in_size():
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "stones-dev"
    if not root.is_dir():
        pytest.skip("../shared/data/stones-dev is not beside this checkout")
    for img in list_images(root / "images"):
        image = read_image(img)
        mask = read_mask(root / "masks" / f"{img.stem}.png", expected_size=image.shape[:2])
        assert 0 < (mask > 0).mean() < 1


def test_big_masks_are_read_and_written_without_wide_copies(tmp_path):
    import tracemalloc

    from stoneseg_core.io.images import read_mask, write_mask

    mask = np.zeros((4000, 4000), np.uint8)  # 16 MB
    mask[1000:3000, 500:2500] = 255
    path = tmp_path / "big.png"
    tracemalloc.start()
    try:
        write_mask(path, mask)
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        back = read_mask(path, expected_size=(4000, 4000))
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(back, mask) and back.dtype == np.uint8
    # an int64 copy alone would be 128 MB; the photo-sized steps stay in uint8
    assert write_peak < 3 * mask.nbytes and read_peak < 3 * mask.nbytes
    odd = mask.copy()
    odd[0, 0] = 7  # not 0/255: still binarized on writing
    write_mask(path, odd)
    assert set(np.unique(read_mask(path))) == {0, 255} and read_mask(path)[0, 0] == 0

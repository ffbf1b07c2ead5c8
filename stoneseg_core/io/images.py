"""Reading photos and masks, and writing masks atomically.

Every photo becomes an RGB ``uint8`` array in its display orientation (EXIF applied), so the
network, the canvas and the masks all agree on which pixel is which. Masks are 8-bit arrays
with 0 = background and 255 = stone.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import re
import tempfile
from pathlib import Path

import cv2
import numpy as np

from stoneseg_core.errors import ImageReadError, MaskError, StonesegError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
STONE = 255
BACKGROUND = 0

cv2.setNumThreads(1)  # decoding runs beside torch; let torch have the cores


def natural_key(name: str) -> list:
    """Sort key so that '2.jpg' comes before '10.jpg'."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def is_image_file(path: Path) -> bool:
    return (
        path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
    )


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, in natural order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StonesegError(f"Folder not found: {folder}")
    return sorted(
        (p for p in folder.iterdir() if is_image_file(p)), key=lambda p: natural_key(p.name)
    )


# --------------------------------------------------------------------------------------- images

_EXIF_ORIENTATION = 0x0112


def _exif_orientation(path: Path) -> int:
    """EXIF orientation tag (1..8), read from the header only; 1 when absent."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            value = im.getexif().get(_EXIF_ORIENTATION, 1)
        return int(value) if value in range(1, 9) else 1
    except Exception:
        return 1


def apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip ``arr`` as the EXIF orientation says, giving the display orientation."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1, :],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, k=-1),
        7: lambda a: np.rot90(a, k=1)[::-1, :],  # transverse
        8: lambda a: np.rot90(a, k=1),
    }
    if orientation in ops:
        arr = np.ascontiguousarray(ops[orientation](arr))
    return arr


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale 16-bit or float data to 0..255 (photos as they are read, and arrays that come
    from elsewhere: the napari plugin's image layers).

    A fixed division by 257 would leave 12-bit camera data (0..4095 stored in 16 bits)
    nearly black, so the range between the 0.1st and 99.9th percentile is stretched to
    0..255 instead; a flat image maps to mid-grey rather than dividing by zero.
    """
    if arr.dtype == np.uint8:
        return arr
    data = arr.astype(np.float32)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return np.zeros(arr.shape, np.uint8)
    lo, hi = np.percentile(finite, (0.1, 99.9))
    if hi <= lo:
        return np.full(arr.shape, 128 if hi > 0 else 0, np.uint8)
    data = np.nan_to_num((data - lo) * (255.0 / (hi - lo)), nan=0.0)
    return np.clip(data + 0.5, 0, 255).astype(np.uint8)


def _looks_truncated_jpeg(raw: np.ndarray) -> bool:
    """True when a JPEG has no end-of-image marker: the download or copy broke off."""
    tail = raw[-4096:].tobytes().rstrip(b"\x00")
    return raw[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in tail


JPEG_REDUCTIONS = {
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def jpeg_reduction(path: str | Path, long_side: int) -> int:
    """The largest factor (1, 2, 4 or 8) a JPEG can be decoded smaller by and still have a
    longer side of at least ``long_side`` pixels; 1 for any other file.

    libjpeg scales while it decodes (it skips most of the inverse DCT), so a 12 MP photo
    that is shrunk to the working scale anyway decodes several times faster at 1/8.
    """
    path = Path(path)
    if path.suffix.lower() not in (".jpg", ".jpeg"):
        return 1
    try:
        longer = max(image_size(path))
    except ImageReadError:
        return 1
    for k in (8, 4, 2):
        if -(-longer // k) >= long_side:
            return k
    return 1


def read_image(path: str | Path, reduce: int = 1) -> np.ndarray:
    """Read any supported photo as an RGB uint8 array (H, W, 3) in display orientation.

    ``reduce`` (2, 4 or 8; see ``jpeg_reduction``): a JPEG is decoded at 1/reduce of its
    size in each direction (rounded up), EXIF orientation still applied; other files ignore
    it. Raises ImageReadError, naming the file, when it is missing, empty, truncated or not
    an image.
    """
    path = Path(path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError(f"Image not found: {path}") from None
    except OSError as exc:
        raise ImageReadError(f"Cannot read image {path.name}: {exc.strerror or exc}") from None
    if raw.size == 0:
        raise ImageReadError(f"Cannot read image {path.name}: the file is empty.")
    if _looks_truncated_jpeg(raw):
        raise ImageReadError(
            f"Cannot read image {path.name}: the JPEG file is truncated (copy it again from the camera or source)."
        )
    arr = _read_tiff_rgb(raw) if path.suffix.lower() in (".tif", ".tiff") else None
    if arr is not None:  # already RGB (or grey) in file order
        arr = to_uint8(arr)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        elif arr.shape[2] == 4:
            arr = np.ascontiguousarray(arr[:, :, :3])
        return apply_orientation(arr, _exif_orientation(path))
    flags = cv2.IMREAD_UNCHANGED
    if reduce in JPEG_REDUCTIONS and raw[:2].tobytes() == b"\xff\xd8":
        flags = JPEG_REDUCTIONS[reduce]  # 8-bit BGR, scaled by libjpeg as it decodes
    arr = cv2.imdecode(raw, flags | cv2.IMREAD_IGNORE_ORIENTATION)
    if arr is None or arr.size == 0:
        raise ImageReadError(f"Cannot read image {path.name}: the file is damaged or not an image.")
    arr = to_uint8(arr)
    if arr.ndim == 2:
        arr = cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    elif arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    elif arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    elif arr.shape[2] == 1:
        arr = cv2.cvtColor(arr[:, :, 0], cv2.COLOR_GRAY2RGB)
    else:
        raise ImageReadError(
            f"Cannot read image {path.name}: {arr.shape[2]} channels are not supported."
        )
    return apply_orientation(arr, _exif_orientation(path))


def _read_tiff_rgb(raw: np.ndarray) -> np.ndarray | None:
    """A grey, RGB or RGBA TIFF (GeoTIFFs, orthophotos) read by tifffile, or None to leave the
    file to OpenCV: tifffile reads tiles and GeoTIFF tags silently, where libtiff in OpenCV
    warns about every GeoTIFF tag on stderr. Compressions tifffile cannot decode without
    imagecodecs (JPEG, often LZW) and other layouts go to OpenCV too."""
    try:
        import tifffile

        with tifffile.TiffFile(io.BytesIO(raw.tobytes())) as tif:
            page = tif.pages[0]
            grey_or_rgb = int(page.photometric) in (1, 2)  # MINISBLACK, RGB
            layout_ok = page.samplesperpixel == 1 or int(page.planarconfig) == 1
            if not (grey_or_rgb and layout_ok):
                return None
            arr = page.asarray()
    except Exception:
        return None
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        return None
    return arr


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) in display orientation, read from the header without decoding."""
    path = Path(path)
    try:
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
        if _exif_orientation(path) in (5, 6, 7, 8):
            w, h = h, w
        return w, h
    except Exception:
        arr = read_image(path)
        return arr.shape[1], arr.shape[0]


# ---------------------------------------------------------------------------------------- masks


def mask_path_for(image_path: str | Path, masks_dir: str | Path) -> Path:
    return Path(masks_dir) / f"{Path(image_path).stem}.png"


def binarize_mask(arr: np.ndarray) -> np.ndarray:
    """Any mask encoding (0/1, 0/255, anti-aliased, RGB, 16-bit) -> uint8 0/255."""
    if arr.ndim == 3:
        arr = arr[:, :, :3].max(axis=2) if arr.shape[2] >= 3 else arr[:, :, 0]
    if arr.size == 0:
        return arr.astype(np.uint8)
    top = arr.max()
    if arr.dtype == np.uint8 and arr.ndim == 2:  # one pass, no boolean or wider copies
        level = 0 if top <= 1 else 127
        return cv2.threshold(np.ascontiguousarray(arr), level, STONE, cv2.THRESH_BINARY)[1]
    if top <= 1:
        out = arr > 0
    elif arr.dtype == np.uint8:
        out = arr > 127
    else:
        out = arr > top / 2
    return np.where(out, np.uint8(STONE), np.uint8(BACKGROUND))  # uint8 throughout: no 8-byte copy


def decode_mask_file(path: Path, what: str = "mask") -> np.ndarray:
    """Decode a mask-like PNG as stored (any depth, any channels); MaskError naming the file."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise MaskError(f"{what.capitalize()} not found: {path}") from None
    except OSError as exc:
        raise MaskError(f"Cannot read {what} {path.name}: {exc.strerror or exc}") from None
    arr = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if arr is None:
        raise MaskError(
            f"Cannot read {what} {path.name}: the file is empty, damaged or not an image."
        )
    return arr


def read_mask(path: str | Path, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask as uint8 0/255 (H, W).

    ``expected_size`` is the (height, width) of its image; a mask of another size is an
    error, because stretching it would silently move every boundary.
    """
    path = Path(path)
    arr = decode_mask_file(path, "mask")
    mask = binarize_mask(arr)
    if expected_size is not None and mask.shape[:2] != tuple(expected_size):
        h, w = expected_size
        raise MaskError(
            f"Mask {path.name} is {mask.shape[1]}x{mask.shape[0]} pixels but its image is {w}x{h}: "
            "a mask must have exactly the size of its photo."
        )
    return mask


# per-stone labels that disagree with their mask by more than this fraction of the mask's
# stone pixels (labels outside the mask, or mask pixels without a stone) do not fit it
INSTANCE_TOLERANCE = 0.005


def read_instance_labels(
    path: str | Path, expected_size: tuple[int, int] | None = None, strict: bool = False
) -> np.ndarray:
    """Read instance ground truth as int32 labels: a 16- or 8-bit label PNG, or one colour per stone.

    ``expected_size`` is the photo's (height, width). ``strict`` (training): a grey file
    whose ids reach the top of its depth (255 in 8 bits, 65535 in 16) is refused, since its
    ids have saturated and stones beyond that cannot be told apart -- among them a 0/255
    mask saved as instances, which reads as one stone.
    """
    path = Path(path)
    arr = decode_mask_file(path, "instance mask")
    if arr.ndim == 3:
        colours = arr[:, :, :3].reshape(-1, 3).astype(np.int64)
        packed = (colours[:, 0] << 32) | (colours[:, 1] << 16) | colours[:, 2]
        uniq, inv = np.unique(packed, return_inverse=True)
        labels = inv.reshape(arr.shape[:2]).astype(np.int32)
        if uniq[0] != 0:  # black is background; without black every colour is a stone
            labels += 1
    else:
        labels = arr.astype(np.int32)
    if expected_size is not None and labels.shape != tuple(expected_size):
        h, w = expected_size
        raise MaskError(
            f"Instance mask {path.name} is {labels.shape[1]}x{labels.shape[0]} pixels but its image is {w}x{h}."
        )
    if strict and arr.ndim == 2 and arr.dtype in (np.uint8, np.uint16) and labels.size:
        top = int(np.iinfo(arr.dtype).max)
        if int(labels.max()) == top:
            bits = 8 * arr.dtype.itemsize
            raise MaskError(
                f"Instance labels {path.parent.name}/{path.name}: a {bits}-bit file whose ids "
                f"reach {top}, so they have saturated: {top} stones or more cannot be told "
                "apart in it (a 0/255 mask saved as instances reads as one stone). Write it as a "
                "16-bit PNG, 0 = ground and one id per stone."
            )
    if labels.max() == 255 and np.isin(labels, (0, 255)).all():
        log.warning(
            "%s holds only 0 and 255: it reads as a single stone, not one label per stone.",
            path.name,
        )
    return labels


def instances_disagreement(
    labels: np.ndarray, mask: np.ndarray, tolerance: float = INSTANCE_TOLERANCE
) -> str | None:
    """Why per-stone labels do not fit a mask, in words; None when they do.

    They fit when their stones (label > 0) cover the mask's stone pixels (> 0): stone pixels
    outside the mask and mask pixels without a stone are each allowed up to ``tolerance`` of
    the mask's stone pixels (a painted touch-up of a few pixels), no more.
    """
    labels, mask = np.asarray(labels), np.asarray(mask)
    if labels.shape[:2] != mask.shape[:2]:
        return (
            f"they are {labels.shape[1]}x{labels.shape[0]} pixels but the mask is "
            f"{mask.shape[1]}x{mask.shape[0]}"
        )
    stone, labelled = mask > 0, labels > 0
    n = int(np.count_nonzero(stone))
    allowed = tolerance * n
    outside = int(np.count_nonzero(labelled & ~stone))
    missing = int(np.count_nonzero(stone & ~labelled))
    why = []
    if outside > allowed:
        why.append(f"{outside} of their stone pixels lie outside the mask")
    if missing > allowed:
        why.append(f"{missing} of the mask's {n} stone pixels have no stone")
    return "; ".join(why) or None


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import: os.umask cannot be read thread-safely later


def new_file_mode(path: Path) -> int:
    """The mode a replaced file keeps, or what a plain ``open()`` would give a new one."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return 0o666 & ~_UMASK


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_output_dir(folder: Path) -> None:
    """Create an output folder (and its parents); a StonesegError naming it if it cannot."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StonesegError(f"Cannot create output folder {folder}: {exc.strerror or exc}") from exc


def atomic_write_bytes(path: str | Path, data) -> None:
    """Write ``data`` to a temporary file beside ``path`` and move it into place.

    ``data``: bytes, or a list of bytes-like chunks written one after the other.
    A crash or a full disk leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in [data] if isinstance(data, (bytes, bytearray, memoryview)) else data:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, new_file_mode(path))  # mkstemp makes 0600: colleagues could not read it
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def describe_os_error(exc: OSError, target: Path) -> str:
    """A sentence a user can act on for a failed write."""
    if exc.errno == errno.ENOSPC:
        return f"Cannot write {target}: the disk is full. Free some space and save again."
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"Cannot write {target}: the folder is read-only or you lack permission."
    return f"Cannot write {target}: {exc.strerror or exc}"


def _only_0_255(mask: np.ndarray) -> bool:
    """Whether a uint8 mask holds only 0 and 255: a table lookup, a band of rows at a time
    (``np.isin`` took 18 s, and a boolean copy of the whole mask, on a 20000 x 20000 one)."""
    odd = np.ones(256, bool)
    odd[[BACKGROUND, STONE]] = False
    step = max(1, (16 << 20) // max(1, mask.shape[1]))
    return not any(odd[mask[r : r + step]].any() for r in range(0, mask.shape[0], step))


def write_mask(path: str | Path, mask: np.ndarray) -> None:
    """Write a mask as an 8-bit PNG with values 0 and 255, atomically."""
    path = Path(path)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise MaskError(f"A mask must be a 2-D array, got shape {mask.shape}.")
    out = (
        np.where(mask > 0, np.uint8(STONE), np.uint8(BACKGROUND))
        if mask.dtype != np.uint8 or mask.max() == 1
        else mask
    )
    if not _only_0_255(out):
        out = binarize_mask(out)
    ok, buf = cv2.imencode(".png", out, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise MaskError(f"Cannot encode mask {path.name} as PNG.")
    try:
        atomic_write_bytes(path, buf.tobytes())
    except OSError as exc:
        raise MaskError(describe_os_error(exc, path)) from exc


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Write any uint8/uint16 array as PNG atomically (instance labels, previews)."""
    path = Path(path)
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise StonesegError(f"Cannot encode {path.name} as PNG.")
    try:
        atomic_write_bytes(path, buf.tobytes())
    except OSError as exc:
        raise StonesegError(describe_os_error(exc, path)) from exc

"""Image decoding for the data pipeline: any file OpenCV reads -> uint8 HWC RGB.

``cv2.imdecode(..., IMREAD_COLOR)`` applies the EXIF orientation, turns grayscale and
RGBA into 3 channels and 16-bit samples into 8-bit (``>> 8``), so every image leaves here
in the pipeline's one convention. Reading the bytes with ``numpy.fromfile`` first lets
us tell an empty file from an undecodable one and works for any path OpenCV cannot open.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from repyolo.errors import DataError

# suffixes OpenCV decodes (lower case, no dot)
IMG_FORMATS = frozenset(
    "bmp dib jpg jpeg jpe jp2 png webp avif gif tif tiff pbm pgm ppm pnm pxm sr ras mpo".split()
)
# image types people put in data folders that OpenCV cannot decode: reported, not read
UNSUPPORTED_IMG_FORMATS = frozenset("heic heif svg psd ico raw cr2 nef arw dng xcf eps".split())

_REDUCED_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                  8: cv2.IMREAD_REDUCED_COLOR_8}


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether the suffix is one OpenCV can decode."""
    return Path(path).suffix[1:].lower() in IMG_FORMATS


def decode_image(path: str | os.PathLike, reduce: int = 1) -> np.ndarray:
    """Decode ``path`` -> uint8 ``(H, W, 3)`` **RGB**.

    Args:
        path: image file.
        reduce: 1, 2, 4 or 8: let the decoder shrink the image by this factor (fast for JPEG;
            used for very large photos that will be resized down anyway).
    Raises:
        DataError naming the file when it is missing, empty, of an unsupported type or
        cannot be decoded.
    """
    path = str(path)
    suffix = Path(path).suffix[1:].lower()
    if suffix in UNSUPPORTED_IMG_FORMATS:
        raise DataError(f"{path}: unsupported image format '.{suffix}' (convert it to jpg or png)")
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read image file ({exc.strerror or exc})") from None
    if buf.size == 0:
        raise DataError(f"{path}: empty image file (0 bytes)")
    try:
        img = cv2.imdecode(buf, _REDUCED_FLAGS.get(int(reduce), cv2.IMREAD_COLOR))
    except cv2.error:
        img = None
    if img is None or img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise DataError(f"{path}: cannot decode image (corrupt or not an image)")
    if img.dtype != np.uint8:  # IMREAD_COLOR already gives 8 bits; guard against exotic decoders
        img = _to_uint8(img)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 ``(H, W, 3)`` RGB (EXIF orientation applied).

    Raises DataError naming the file when it is unreadable.
    """
    return decode_image(path)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    img = img.astype(np.float32)
    hi = float(img.max()) if img.size else 1.0
    scale = 255.0 if hi <= 1.0 else 255.0 / hi
    return np.clip(img * scale, 0, 255).astype(np.uint8)


def jpeg_is_truncated(path: str | os.PathLike) -> bool:
    """Whether a JPEG file lacks its end-of-image marker (it may still decode, with a gray tail)."""
    try:
        with open(path, "rb") as f:
            f.seek(-2, os.SEEK_END)
            return f.read() != b"\xff\xd9"
    except OSError:
        return False


def write_image(path: str | os.PathLike, img: np.ndarray, quality: int = 95) -> None:
    """Write an RGB uint8 image (JPEG quality ``quality``); parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower() or ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext in (".jpg", ".jpeg") else []
    ok, data = cv2.imencode(ext, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise DataError(f"{path}: cannot encode image as {ext}")
    data.tofile(str(path))

"""What inference reads: images, folders, globs, list files, videos, webcams, streams, arrays.

:func:`resolve_sources` expands a user's ``source`` into :class:`SourceEntry` items (folders are
searched recursively, like data set folders, see :func:`repyolo.data.sources.walk_files`);
:func:`iter_frames` decodes them one RGB frame at a time. A source that cannot be used is
reported with a one-line warning and skipped; :class:`~repyolo.errors.DataError` is raised only
when nothing is left.
"""
from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repyolo.data.io import IMG_FORMATS, read_image
from repyolo.data.sources import read_list_file, walk_files
from repyolo.errors import DataError
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)

VID_FORMATS = frozenset("mp4 avi mov mkv m4v wmv mpeg mpg webm ts flv asf 3gp".split())
STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://", "udp://", "tcp://")


@dataclass
class SourceEntry:
    """One thing to read: ``kind`` is ``'image'``, ``'video'``, ``'stream'`` or ``'array'``."""

    kind: str
    target: object  # path str, webcam index / URL, or an ndarray
    name: str


@dataclass
class Frame:
    """One decoded frame: ``img`` uint8 ``(H, W, 3)`` RGB."""

    img: np.ndarray
    path: str | None
    name: str
    kind: str
    index: int = 0           # frame number within a video / stream
    fps: float = 0.0
    n_frames: int = 0        # frames in the video (0 = unknown / stream)
    source_id: int = 0       # which entry of the resolved source list


def media_kind(path: str | os.PathLike) -> str | None:
    """``'image'``, ``'video'`` or ``None`` from the file suffix."""
    ext = Path(path).suffix[1:].lower()
    if ext in IMG_FORMATS:
        return "image"
    if ext in VID_FORMATS:
        return "video"
    return None


def _as_rgb_array(a: np.ndarray) -> np.ndarray | None:
    """A uint8 gray / RGB / RGBA array as ``(H, W, 3)`` RGB, or ``None`` when it is not an image."""
    if a.dtype == np.uint8 and a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, 2)
    elif a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] in (1, 4):
        a = np.repeat(a, 3, 2) if a.shape[2] == 1 else np.ascontiguousarray(a[:, :, :3])
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8 or 0 in a.shape:
        return None
    return a


class _Resolver:
    """Accumulates entries and one-line warnings while walking a (nested) source."""

    def __init__(self, warnings: list[str]):
        self.out: list[SourceEntry] = []
        self.warnings = warnings

    def skip(self, msg: str) -> None:
        self.warnings.append(msg)
        LOGGER.warning("%s", msg)

    def add_files(self, files, empty_msg: str) -> None:
        media = [Path(f) for f in files if media_kind(f) is not None]
        if not media:
            self.skip(empty_msg)
        self.out.extend(SourceEntry(media_kind(f), str(f), f.name) for f in media)

    def visit(self, s) -> None:
        if isinstance(s, SourceEntry):  # already resolved
            self.out.append(s)
        elif isinstance(s, np.ndarray):
            rgb = _as_rgb_array(s)
            if rgb is None:
                self.skip(f"array of shape {s.shape} dtype {s.dtype}: expected uint8 (H, W, 3) RGB, skipped")
            else:
                self.out.append(SourceEntry("array", rgb, f"array{len(self.out)}"))
        elif isinstance(s, (list, tuple)):
            for item in s:
                self.visit(item)
        elif isinstance(s, int) and not isinstance(s, bool):
            self.out.append(SourceEntry("stream", s, f"webcam{s}"))
        else:
            self.visit_text(str(s))

    def visit_text(self, text: str) -> None:
        if text.isdigit():
            self.out.append(SourceEntry("stream", int(text), f"webcam{text}"))
            return
        if text.lower().startswith(STREAM_PREFIXES):
            self.out.append(SourceEntry("stream", text, Path(text.split("?")[0]).stem or "stream"))
            return
        p = Path(os.path.expanduser(text))
        if p.is_dir():
            self.add_files(walk_files(p), f"{p}: no images or videos found in this folder")
        elif p.is_file() and p.suffix.lower() == ".txt":
            self.visit_list(p)
        elif p.is_file():
            if media_kind(p) is None:
                self.skip(f"{p}: not an image or video file type, skipped")
            else:
                self.out.append(SourceEntry(media_kind(p), str(p), p.name))
        elif any(ch in text for ch in "*?["):
            files = sorted(f for f in glob.glob(os.path.expanduser(text), recursive=True) if os.path.isfile(f))
            self.add_files(files, f"{text}: no images or videos match this pattern")
        else:
            self.skip(f"{text}: no such file or folder")

    def visit_list(self, p: Path) -> None:
        try:
            entries = read_list_file(p)
        except DataError as exc:
            self.skip(str(exc))
            return
        n0 = len(self.out)
        for no, entry, q in entries:
            if not q.is_file():
                self.skip(f"{p}:{no}: {entry}: no such file")
            elif media_kind(q) is None:
                self.skip(f"{p}:{no}: {entry}: not an image or video file type, skipped")
            else:
                self.out.append(SourceEntry(media_kind(q), str(q), q.name))
        if len(self.out) == n0:
            self.skip(f"{p}: list file names no readable image or video")


def resolve_sources(source, warn: list[str] | None = None) -> list[SourceEntry]:
    """Expand ``source`` into a flat list of entries.

    Args:
        source: path / glob / list file / folder / webcam index / URL / ndarray, or a list of them.
        warn: list that receives one line per source that was skipped (also logged).
    Raises:
        DataError: nothing usable was found (the message says why).
    """
    warnings = [] if warn is None else warn
    resolver = _Resolver(warnings)
    resolver.visit(source)
    if not resolver.out:
        reason = warnings[0] if warnings else f"{source!r}: nothing to read"
        more = f" (and {len(warnings) - 1} more problems)" if len(warnings) > 1 else ""
        raise DataError(f"no images or videos to process: {reason}{more}")
    return resolver.out


def _video_frames(e: SourceEntry, sid: int, vid_stride: int, warnings: list[str]) -> Iterator[Frame]:
    import cv2

    cap = cv2.VideoCapture(e.target)
    if not cap.isOpened():
        msg = (f"{e.target}: cannot open video (unsupported codec or not a video)" if e.kind == "video"
               else f"cannot open stream {e.target!r}")
        warnings.append(msg)
        LOGGER.warning("%s (skipped)", msg)
        cap.release()
        return
    stride = max(int(vid_stride), 1)
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 30.0
    n_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if e.kind == "video" else 0
    index, got = 0, 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            if index % stride == 0:
                got += 1
                yield Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), str(e.target), e.name, e.kind, index,
                            fps / stride, n_frames, sid)
            index += 1
    finally:
        cap.release()
    if got == 0:
        msg = f"{e.target}: no frame could be decoded"
        warnings.append(msg)
        LOGGER.warning("%s (skipped)", msg)


def iter_frames(entries: Iterable[SourceEntry], vid_stride: int = 1, warn: list[str] | None = None) -> Iterator[Frame]:
    """Decode the entries one frame at a time (RGB). Unreadable images and videos that cannot be
    opened are reported (one line each, appended to ``warn``) and skipped."""
    warnings = [] if warn is None else warn
    for sid, e in enumerate(entries):
        if e.kind == "array":
            yield Frame(e.target, None, e.name, "array", source_id=sid)
        elif e.kind == "image":
            try:
                img = read_image(e.target)
            except DataError as exc:
                warnings.append(str(exc))
                LOGGER.warning("%s (skipped)", exc)
                continue
            yield Frame(img, e.target, e.name, "image", source_id=sid)
        else:
            yield from _video_frames(e, sid, vid_stride, warnings)


class Prefetcher:
    """Runs an iterator in a background thread, ``depth`` items ahead (image decoding and
    letterboxing in OpenCV release the GIL, so they overlap with inference on the main thread).

    Iterate it like the wrapped iterator: items come in order; an exception raised by the wrapped
    iterator is raised here; :meth:`close` (also on ``with`` exit or when iteration stops early)
    stops the thread.
    """

    _END = object()

    def __init__(self, iterator, depth: int = 4):
        import queue
        import threading

        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
        self._stop = threading.Event()
        self._it = iter(iterator)
        self._thread = threading.Thread(target=self._run, name="repyolo-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._it:
                if not self._put((item, None)):
                    return
        except BaseException as exc:  # handed to the consumer
            self._put((self._END, exc))
            return
        self._put((self._END, None))

    def __iter__(self):
        try:
            while True:
                item, exc = self._queue.get()
                if item is self._END:
                    if exc is not None:
                        raise exc
                    return
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

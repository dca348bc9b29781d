"""Check every image and label of a data set once, in parallel, and cache the result.

Each image is decoded (so corrupt files are found before training starts) and its boxes
are validated (:func:`repyolo.data.formats.validate_boxes`). Problems are collected in a
:class:`CheckReport` with the file (and line) and what was done about each; nothing is
fatal unless no usable image is left.

The result is cached in a ``.cache`` file (an ``.npz`` without pickles) keyed by a hash of
the file list, sizes and modification times. It lives beside the labels, or in
``$REPYOLO_CACHE_DIR`` (default ``~/.cache/repyolo``) when the data folder is read-only.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from repyolo.data.formats import Issue, LabelFileError, img2label_path, parse_yolo_text, validate_boxes
from repyolo.data.io import decode_image, jpeg_is_truncated
from repyolo.data.sources import Sample, SampleList
from repyolo.errors import DataError
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)
CACHE_VERSION = 1
# check keys whose report this process has logged: a split read twice (training, then precise-BN
# or evaluation) is reported once, like the warnings module's "once" registry
_LOGGED_KEYS: set[str] = set()


@dataclass
class SampleResult:
    """The checked form of one sample.

    ``labels`` ``(n, 5)`` float32 ``[class, x1, y1, x2, y2]`` original pixels, ``areas`` ``(n,)``
    (COCO ``area`` for json sources, box area otherwise), ``crowd`` ``(k, 5)`` iscrowd boxes.
    """

    ok: bool
    shape: tuple[int, int] = (0, 0)
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.float32))
    areas: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    crowd: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.float32))
    issues: list[Issue] = field(default_factory=list)
    n_rows: int = 0  # box rows read before checking


def _strip_path(msg: str, path: str) -> str:
    return msg[len(path) + 2:] if msg.startswith(path + ": ") else msg


def check_sample(sample: Sample, nc: int | None) -> SampleResult:
    """Decode the image and validate its boxes (thread-safe; never raises for bad data)."""
    im = sample.im_file
    try:
        img = decode_image(im)
    except DataError as exc:
        return SampleResult(ok=False, issues=[Issue(im, _strip_path(str(exc), im), "skipped")])
    h, w = img.shape[:2]
    del img
    issues: list[Issue] = []
    if im.lower().endswith((".jpg", ".jpeg")) and jpeg_is_truncated(im):
        issues.append(Issue(im, "truncated JPEG (no end marker), decoded anyway", "warning"))

    if sample.coco is not None:
        entry = sample.coco
        for name, reason in entry.bad:
            issues.append(Issue(im, f"{name}: {reason}", "dropped"))
        if entry.width and entry.height and (entry.width, entry.height) != (w, h):
            issues.append(Issue(im, f"json size {entry.width}x{entry.height} differs from the image {w}x{h}",
                                "warning"))
        rows, names, areas = entry.rows, entry.names, entry.areas
        file = im
        crowd = entry.crowd.astype(np.float32)
    else:
        file = sample.label_file
        try:
            with open(file, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return SampleResult(ok=True, shape=(h, w), issues=issues + [Issue(file, "no label file", "background")])
        except OSError as exc:
            return SampleResult(ok=False, issues=issues + [Issue(file, f"cannot read label file ({exc})", "skipped")])
        try:
            rows, names, bad = parse_yolo_text(data, w, h)
        except LabelFileError as exc:
            return SampleResult(ok=False, issues=issues + [Issue(file, str(exc), "skipped")])
        issues.extend(Issue(file, reason, "dropped", line=no) for no, reason in bad)
        areas = None
        crowd = np.zeros((0, 5), np.float32)
    n_rows = len(rows) + sum(1 for i in issues if i.action == "dropped")
    labels, idx, box_issues = validate_boxes(rows, w, h, nc, file, names)
    issues.extend(box_issues)
    if areas is None:
        areas = ((labels[:, 3] - labels[:, 1]) * (labels[:, 4] - labels[:, 2])).astype(np.float64)
    else:
        areas = np.asarray(areas, np.float64)[idx]
    return SampleResult(ok=True, shape=(h, w), labels=labels, areas=areas, crowd=crowd, issues=issues,
                        n_rows=n_rows)


@dataclass
class CheckReport:
    """Summary of a data set check: counts, every issue with its file, class histogram."""

    prefix: str = ""
    n_images: int = 0  # images listed
    n_usable: int = 0
    n_skipped: int = 0  # images not used
    n_background: int = 0  # usable images without boxes
    n_missing_labels: int = 0
    n_orphan_labels: int = 0  # label files without an image (ignored)
    n_boxes: int = 0  # boxes kept
    n_dropped: int = 0  # box rows removed
    n_clipped: int = 0
    n_crowd: int = 0
    issues: list[Issue] = field(default_factory=list)
    class_counts: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    cache_path: str | None = None
    from_cache: bool = False
    key: str = ""  # hash of the checked files (see :func:`cache_key`)

    def issues_for(self, name: str) -> list[Issue]:
        """Issues whose file name ends with ``name``."""
        return [i for i in self.issues if i.file.endswith(name)]

    def summary(self, max_issues: int | None = 30) -> str:
        """A multi-line human-readable summary (issues beyond ``max_issues`` are counted, not listed)."""
        p = self.prefix
        lines = [f"{p}{self.n_usable}/{self.n_images} images usable, {self.n_boxes} boxes "
                 f"({self.n_background} backgrounds, {self.n_missing_labels} without label file), "
                 f"{self.n_skipped} images skipped, {self.n_dropped} boxes dropped, {self.n_clipped} clipped"
                 + (f", {self.n_orphan_labels} label files without an image" if self.n_orphan_labels else "")
                 + (f", {self.n_crowd} crowd boxes (eval only)" if self.n_crowd else "")
                 + (" [cached]" if self.from_cache else "")]
        shown = [i for i in self.issues if i.action != "background"]
        if max_issues is not None and len(shown) > max_issues:
            lines += [f"{p}  {i}" for i in shown[:max_issues]]
            lines.append(f"{p}  ... and {len(shown) - max_issues} more issues")
        else:
            lines += [f"{p}  {i}" for i in shown]
        return "\n".join(lines)

    def histogram(self) -> str:
        """Class histogram as aligned text lines."""
        width = max((len(n) for n in self.names), default=5)
        return "\n".join(f"{i:>4d}  {n:<{width}s}  {c}" for i, (n, c) in enumerate(zip(self.names, self.class_counts)))

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("n_images", "n_usable", "n_skipped", "n_background", "n_missing_labels",
                                           "n_orphan_labels", "n_boxes", "n_dropped", "n_clipped", "n_crowd",
                                           "class_counts", "names", "cache_path", "from_cache")}
        d["issues"] = [i.to_dict() for i in self.issues]
        return d

    def log(self, logger=LOGGER) -> None:
        """Log the summary (a warning when files are skipped, dropped or ignored), once per process
        for the same files: a second data set over them logs it at debug level only."""
        if self.key and self.key in _LOGGED_KEYS:
            logger.debug("%ssame files as an earlier check: %d/%d images usable (issues reported above)",
                         self.prefix, self.n_usable, self.n_images)
            return
        if self.key:
            _LOGGED_KEYS.add(self.key)
        bad = [i for i in self.issues if i.action in ("skipped", "dropped", "ignored")]
        (logger.warning if bad else logger.info)(self.summary())


# ----------------------------------------------------------------------------------- cache

def cache_root() -> Path:
    """Writable folder for caches of read-only data sets (``$REPYOLO_CACHE_DIR`` or ``~/.cache/repyolo``)."""
    env = os.environ.get("REPYOLO_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "repyolo"


def _dir_writable(d: Path) -> bool:
    """Writable for us *and* not marked read-only (root ignores permission bits, we do not)."""
    try:
        st = d.stat()
    except OSError:
        return False
    return os.access(d, os.W_OK) and bool(stat.S_IMODE(st.st_mode) & 0o222)


def default_cache_path(sources) -> Path:
    """Where the cache belongs: beside the label folder (or the list/json file) of the first source."""
    srcs = [Path(s) for s in (sources if isinstance(sources, (list, tuple)) else [sources])]
    first = srcs[0]
    if first.is_dir():  # .../images/train -> .../labels/train.cache
        base = Path(os.path.dirname(img2label_path(first / "x.jpg")))
    else:
        base = first.with_suffix("")
    tag = "" if len(srcs) == 1 else "." + hashlib.sha1("|".join(map(str, srcs)).encode()).hexdigest()[:8]
    return base.parent / f"{base.name}{tag}.cache"


def writable_cache_path(path: Path) -> Path:
    """``path`` when its folder is writable, else the same name under :func:`cache_root`."""
    if _dir_writable(path.parent):
        return path
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    return cache_root() / "labels" / f"{path.stem}-{digest}.cache"


def _stat(path: str) -> tuple:
    try:
        st = os.stat(path)
        return (path, st.st_size, st.st_mtime_ns)
    except OSError:
        return (path, -1, 0)


def cache_key(samples: SampleList, nc: int | None) -> str:
    """Hash of the file list, sizes and mtimes (images, label files, list/json files) and ``nc``."""
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, nc]).encode())
    for s in samples.samples:
        h.update(repr(_stat(s.im_file)).encode())
        if s.label_file:
            h.update(repr(_stat(s.label_file)).encode())
    for f in samples.stat_files:
        h.update(repr(_stat(f)).encode())
    return h.hexdigest()


def save_cache(path: Path, key: str, files: list[str], results: list[SampleResult]) -> bool:
    """Write results atomically; returns False (and logs) when the folder is not writable."""
    meta = {
        "version": CACHE_VERSION, "key": key, "files": files,
        "ok": [r.ok for r in results], "shapes": [list(r.shape) for r in results],
        "n_rows": [r.n_rows for r in results],
        "issues": [[i.to_dict() for i in r.issues] for r in results],
    }
    arrays = dict(
        meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        labels=np.concatenate([r.labels for r in results] + [np.zeros((0, 5), np.float32)]).astype(np.float32),
        areas=np.concatenate([r.areas for r in results] + [np.zeros(0)]).astype(np.float64),
        counts=np.array([len(r.labels) for r in results], np.int64),
        crowd=np.concatenate([r.crowd for r in results] + [np.zeros((0, 5), np.float32)]).astype(np.float32),
        crowd_counts=np.array([len(r.crowd) for r in results], np.int64),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        return True
    except OSError as exc:
        LOGGER.debug("cannot write label cache %s: %s", path, exc)
        return False


def load_cache(path: Path, key: str, files: list[str]) -> list[SampleResult] | None:
    """Results from ``path`` when it exists and matches ``key`` and ``files``, else ``None``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            if meta.get("version") != CACHE_VERSION or meta.get("key") != key or meta.get("files") != files:
                return None
            labels, areas, counts = z["labels"], z["areas"], z["counts"]
            crowd, crowd_counts = z["crowd"], z["crowd_counts"]
    except (OSError, ValueError, KeyError, json.JSONDecodeError, EOFError) as exc:
        if path.exists():
            LOGGER.debug("ignoring unreadable label cache %s: %s", path, exc)
        return None
    ends, cends = np.cumsum(counts), np.cumsum(crowd_counts)
    out = []
    for i in range(len(files)):
        a, b = ends[i] - counts[i], ends[i]
        ca, cb = cends[i] - crowd_counts[i], cends[i]
        out.append(SampleResult(
            ok=meta["ok"][i], shape=tuple(meta["shapes"][i]), labels=labels[a:b], areas=areas[a:b],
            crowd=crowd[ca:cb], issues=[Issue(**d) for d in meta["issues"][i]], n_rows=meta["n_rows"][i]))
    return out


# ----------------------------------------------------------------------------------- check

def check_samples(samples: SampleList, nc: int | None, names: list[str] | None = None, workers: int | None = None,
                  cache_path: Path | None = None, prefix: str = "") -> tuple[list[SampleResult], CheckReport]:
    """Check every sample (thread pool of ``workers``), using/refreshing the cache at ``cache_path``.

    Returns the per-sample results (same order) and the report. Raises DataError when no
    usable image is left.
    """
    files = [s.im_file for s in samples.samples]
    key = cache_key(samples, nc)
    results, from_cache, used_cache = None, False, None
    if cache_path is not None:
        for cand in dict.fromkeys([cache_path, writable_cache_path(cache_path)]):
            results = load_cache(cand, key, files)
            if results is not None:
                from_cache, used_cache = True, cand
                break
    if results is None:
        n = len(files)
        workers = max(1, min(workers if workers is not None else (os.cpu_count() or 1), 8, n or 1))
        LOGGER.info("%schecking %d images and labels (%d threads)", prefix, n, workers)
        if workers > 1 and n > 1:
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(lambda s: check_sample(s, nc), samples.samples, chunksize=8))
        else:
            results = [check_sample(s, nc) for s in samples.samples]
        if cache_path is not None:
            target = writable_cache_path(cache_path)
            if save_cache(target, key, files, results):
                used_cache = target
    report = build_report(samples, results, nc, names, prefix)
    report.key = hashlib.sha256((key + json.dumps([i.to_dict() for i in samples.issues])).encode()).hexdigest()
    report.from_cache = from_cache
    report.cache_path = str(used_cache) if used_cache else None
    if report.n_usable == 0:
        detail = "; ".join(str(i) for i in report.issues[:5])
        where = samples.samples[0].im_file if samples.samples else "the given sources"
        msg = f"{prefix}no usable images" + (f" (first: {where})" if samples.samples else " found")
        raise DataError(msg + (f": {detail}" if detail else ""))
    return results, report


def build_report(samples: SampleList, results: list[SampleResult], nc: int | None, names: list[str] | None,
                 prefix: str = "") -> CheckReport:
    issues = list(samples.issues)
    for r in results:
        issues.extend(r.issues)
    usable = [r for r in results if r.ok]
    counts = Counter()
    for r in usable:
        counts.update(r.labels[:, 0].astype(np.int64).tolist())
    n_cls = nc if nc is not None else (max(counts) + 1 if counts else 0)
    names = list(names) if names is not None else [str(i) for i in range(n_cls)]
    return CheckReport(
        prefix=prefix,
        n_images=len(results) + sum(1 for i in samples.issues if i.action == "skipped"),
        n_usable=len(usable),
        n_skipped=len(results) - len(usable) + sum(1 for i in samples.issues if i.action == "skipped"),
        n_background=sum(1 for r in usable if len(r.labels) == 0),
        n_missing_labels=sum(1 for i in issues if i.action == "background"),
        n_orphan_labels=sum(1 for i in issues if i.action == "ignored"),
        n_boxes=sum(len(r.labels) for r in usable),
        n_dropped=sum(1 for i in issues if i.action == "dropped"),
        n_clipped=sum(1 for i in issues if i.action == "clipped"),
        n_crowd=sum(len(r.crowd) for r in usable),
        issues=issues,
        class_counts=[counts.get(i, 0) for i in range(n_cls)],
        names=names,
    )

"""The prepared store: decoded frames, optical flow and ROI centres laid out for random clip access.

Layout of ``STORE/``::

    manifest.json            format "tstcnn-store" v1: prep config, library versions, layout, classes,
                             flow_scale, and one record per video (split, label, actions, frames, fps, size,
                             source path, sha256, ...)
    videos/<id>/rgb.npy      (N, H*3//2, W) uint8, YUV 4:2:0 (I420) frames at the prep width
    videos/<id>/flow.npy     (N, H//2, W//2, 2) int8 q, flow t→t+1 in pixels of the resized frame, at half
                             resolution, square-root companded: flow = sign(q)·q²·``flow_step`` (meta.json);
                             the last frame repeats
    videos/<id>/roi.npy      (N, 2) float32 smoothed ROI centres (x, y)
    videos/<id>/flow_max.npy (N,) float32 per-frame maximum flow norm (normalisation statistics)
    videos/<id>/meta.json    written last: a video folder is complete iff it holds meta.json

The companding keeps a relative precision of about 1/q at every magnitude: a video with 40-pixel strokes still
stores its sub-pixel motions (the step near 0 is range/127², not range/127).

Every array is a plain ``.npy`` opened as a memory map, so a clip read touches only the rows of its crop
(no decompression, nothing else of the video). A video folder is built under a temporary name
``.<id>.<8 hex>.tmp`` and moved into place when complete; a rebuilt video's new folder is exchanged with the old
one in a single step (then the old one is removed), so an entry is never missing nor half-written and a killed
``prepare`` leaves at most temporary folders, which the next run removes. An entry's ``meta.json`` describes
its arrays: a :class:`Store` takes each video's record from it, so a manifest written before an entry was
rebuilt still reads whole; the store refuses a manifest naming an entry that is not there.

A :class:`Store` checks what it reads before anything is sized by it: every manifest field (known names, types,
``flow_scale`` finite and > 0, the prep settings against the config's bounds) and every field of each video's
record, whose frame count and frame size must be those of its arrays (``rgb.npy`` on opening the store, the
others when the video is first read); a failure is one line naming the file and the field. Stored strokes lie
inside their video (the writer cuts them to its frames) and number at most :data:`MAX_ACTIONS`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import math
import numbers
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tstcnn import __version__
from tstcnn.config import PrepConfig, field_specs
from tstcnn.io.atomic import atomic_write_text
from tstcnn.io.ids import check_id, inside
from tstcnn.io.mediaeval import MAX_ACTIONS_PER_VIDEO, Action

__all__ = ["FORMAT", "VERSION", "MAX_ACTIONS", "Store", "VideoEntry", "VideoArrays", "VideoEntryWriter",
           "write_video_entry", "finalize_store", "complete_video_ids", "remove_incomplete", "entry_in_the_way",
           "move_entry", "clip_actions", "downsample_flow", "library_versions", "rgb_to_yuv420", "yuv420_to_rgb"]

FORMAT = "tstcnn-store"
VERSION = 1
MANIFEST = "manifest.json"
META = "meta.json"
VIDEOS = "videos"
_HEADER_BYTES = 128  # .npy header reserved up front, filled in once the frame count is known
_FLOW_HEADROOM = 3.0  # quantisation range = headroom × the largest per-frame 99.5th percentile of |flow|
_FLOW_PERCENTILE = 99.5
_TEMPORARY = re.compile(r"\.(.+)\.[0-9a-f]{8}\.tmp")  # .<id>.<8 hex>.tmp: a folder being built or replaced
MAX_ACTIONS = MAX_ACTIONS_PER_VIDEO  # the annotation reader's cap: one bound on strokes per video everywhere
_MANIFEST_FIELDS = ("format", "version", "preset", "prep", "libraries", "layout", "source", "classes", "flow_scale",
                    "flow_scale_from", "videos", "problems")
_REQUIRED_FIELDS = ("format", "version", "prep", "classes", "flow_scale", "videos")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoEntry:
    """One prepared video. ``actions`` are strokes of annotated long videos; ``label`` the class of a trimmed clip."""

    id: str
    split: str
    label: str | None
    actions: tuple[Action, ...]
    frames: int
    fps: float
    width: int
    height: int
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose output is stored (decoder, flow, arrays)."""
    import av  # loads FFmpeg, which readers of a store never need

    return {"tstcnn": __version__, "numpy": np.__version__, "opencv": cv2.__version__, "av": av.__version__,
            "libavcodec": ".".join(map(str, av.library_versions.get("libavcodec", ())))}


# --- YUV 4:2:0 --------------------------------------------------------------------------------------------------

def rgb_to_yuv420(rgb: np.ndarray) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8 → I420 ``(H*3//2, W)`` uint8 (OpenCV's BT.601 conversion); H and W even."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420)


def yuv420_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Planes ``y (T, h, w)``, ``u, v (T, h/2, w/2)`` → RGB ``(T, h, w, 3)`` uint8 in one OpenCV call.

    Stacking T frames' planes makes one tall I420 image whose chroma rows still pair with their luma rows,
    because h is even.
    """
    t, h, w = y.shape
    buffer = np.empty(t * h * w * 3 // 2, np.uint8)
    luma, chroma = t * h * w, t * h * w // 4
    buffer[:luma] = y.reshape(-1)
    buffer[luma:luma + chroma] = u.reshape(-1)
    buffer[luma + chroma:] = v.reshape(-1)
    rgb = cv2.cvtColor(buffer.reshape(t * h * 3 // 2, w), cv2.COLOR_YUV2RGB_I420)
    return rgb.reshape(t, h, w, 3)


# --- writing ----------------------------------------------------------------------------------------------------

def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """A version 1.0 ``.npy`` header padded to exactly ``_HEADER_BYTES`` (so it can be written after the data)."""
    text = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape})
    body_len = _HEADER_BYTES - 10
    if len(text) + 1 > body_len:
        raise ValueError(f"array shape {shape} too large for the store's .npy header")
    body = text.ljust(body_len - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + body_len.to_bytes(2, "little") + body.encode("latin1")


class _StreamedArray:
    """A ``.npy`` file written one frame at a time; the header is filled in at ``close``."""

    def __init__(self, path: Path, frame_shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.frame_shape, self.dtype, self.count = path, frame_shape, np.dtype(dtype), 0
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close() or discard()
        try:
            self._file.write(b"\0" * _HEADER_BYTES)
        except BaseException:
            self.discard()
            raise

    def append(self, frame: np.ndarray) -> None:
        if frame.shape != self.frame_shape:
            raise ValueError(f"{self.path.name}: frame of shape {frame.shape}, expected {self.frame_shape}")
        self._file.write(np.ascontiguousarray(frame, self.dtype).tobytes())
        self.count += 1

    def close(self) -> None:
        self._file.seek(0)
        self._file.write(_npy_header((self.count, *self.frame_shape), self.dtype))
        self._file.close()

    def discard(self) -> None:
        """Close without completing; errors are dropped (the file is being thrown away)."""
        with contextlib.suppress(OSError):
            self._file.close()


def _load_renameat2() -> Any:
    """Linux's ``renameat2``, which can exchange two paths in one step; None where the C library lacks it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _temporary_name(video_id: str) -> str:
    return f".{video_id}.{uuid.uuid4().hex[:8]}.tmp"


def entry_in_the_way(store_root: str | Path, video_id: str) -> str | None:
    """Why ``video_id``'s entry cannot be written: something without meta.json has its name; None if nothing.

    Entries are moved into place complete, so such a folder was not made by the store: it is never replaced.
    """
    path = Path(store_root) / VIDEOS / video_id
    if os.path.lexists(path) and not (path / META).is_file():
        return (f"{path} is in the way of video {video_id!r}: it holds no {META}, so prepare did not make it; "
                "move it away and run prepare again")
    return None


def _exchange(first: Path, second: Path) -> None:
    """Swap two existing folders, in one atomic step where the system can, else by three renames.

    Between the fallback's first two renames ``second`` is missing: a kill there leaves a store that
    :class:`Store` refuses by name and that the next ``prepare`` completes.
    """
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS):  # those two: this file system or kernel cannot exchange
            raise OSError(code, os.strerror(code), str(first), None, str(second))
    aside = second.parent / _temporary_name(second.name)
    os.rename(second, aside)
    os.rename(first, second)
    os.rename(aside, first)


def _remove_quietly(path: Path) -> None:
    """Remove one of our temporary folders; a failure is logged, not raised (the next run removes it)."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("could not remove the temporary folder %s (%s); the next prepare removes it", path, exc)


class VideoEntryWriter:
    """Write one video's folder frame by frame, in bounded memory, atomically.

    ``add(yuv, flow_half)`` takes an I420 frame ``(H*3//2, W)`` and the flow towards the next frame at half
    resolution ``(H//2, W//2, 2)`` float32 in pixels of the resized frame. ``finish(roi, meta)`` quantises the
    flow with a per-video step, writes the small arrays and ``meta.json`` last, then moves the folder into
    place; an existing entry of the same id is exchanged with it in one step and then removed, so readers see
    the old entry or the new one, never none. Used as a context manager, an exception removes the temporary
    folder.
    """

    def __init__(self, store_root: str | Path, video_id: str, width: int, height: int) -> None:
        check_id(video_id)
        if width % 2 or height % 2:
            raise ValueError(f"video {video_id!r}: frame size {width}x{height} must be even")
        self.video_id, self.width, self.height = video_id, width, height
        videos = Path(store_root) / VIDEOS
        videos.mkdir(parents=True, exist_ok=True)
        self.final_dir = inside(videos, videos / video_id)
        self.tmp_dir = inside(videos, videos / _temporary_name(video_id))
        in_the_way = entry_in_the_way(store_root, video_id)
        if in_the_way:  # found before the work, not after
            raise ValueError(in_the_way)
        self._arrays: list[_StreamedArray] = []
        self._flow_max: list[float] = []
        self._flow_absmax: list[float] = []
        self._flow_typical: list[float] = []
        self.tmp_dir.mkdir()
        try:
            self._rgb = self._array("rgb.npy", (height * 3 // 2, width), np.uint8)
            self._flow = self._array("flow.f32.npy", (height // 2, width // 2, 2), np.float32)
        except BaseException:
            self.abort()
            raise

    def _array(self, name: str, frame_shape: tuple[int, ...], dtype: np.dtype) -> _StreamedArray:
        array = _StreamedArray(self.tmp_dir / name, frame_shape, dtype)
        self._arrays.append(array)
        return array

    @property
    def frames(self) -> int:
        return self._rgb.count

    def add(self, yuv: np.ndarray, flow_half: np.ndarray) -> None:
        self._rgb.append(yuv)
        self._flow.append(flow_half)
        norm = np.sqrt(flow_half[..., 0] ** 2 + flow_half[..., 1] ** 2)
        self._flow_max.append(float(norm.max()))
        magnitude = np.abs(flow_half)
        self._flow_absmax.append(float(magnitude.max()))
        self._flow_typical.append(float(np.percentile(magnitude, _FLOW_PERCENTILE)))

    def flow_maxima(self) -> np.ndarray:
        return np.asarray(self._flow_max, np.float32)

    def _quantise_flow(self) -> tuple[float, float]:
        """flow.f32.npy → flow.npy int8 ``q = sign(f)·round(sqrt(|f| / step))``; returns (step, fraction clipped).

        The range is set by the bulk of the motion, not by the largest vector, so that a few spurious vectors
        (frequent in fast flow methods) do not make the step coarse for the whole video; they are clipped.
        """
        absmax = np.asarray(self._flow_absmax, np.float64)
        robust = _FLOW_HEADROOM * max(self._flow_typical, default=0.0)
        limit = min(float(absmax.max(initial=0.0)), robust)
        step = (limit if limit > 0 else 1.0) / 127**2
        source = np.load(self._flow.path, mmap_mode="r")
        target = self._array("flow.npy", self._flow.frame_shape, np.int8)
        clipped = 0
        for start in range(0, len(source), 256):
            chunk = np.asarray(source[start:start + 256])
            q = np.rint(np.sqrt(np.abs(chunk) / step))
            clipped += int(np.count_nonzero(q > 127))
            for frame in (np.sign(chunk) * np.minimum(q, 127)).astype(np.int8):
                target.append(frame)
        target.close()
        del source
        self._flow.path.unlink()
        return step, clipped / max(1, absmax.size * int(np.prod(self._flow.frame_shape)))

    def finish(self, roi: np.ndarray, meta: dict[str, Any]) -> Path:
        """Complete the folder (``meta`` gets the frame count, size and flow step) and move it into place."""
        n = self.frames
        if n == 0:
            raise ValueError(f"video {self.video_id!r}: no frames to store")
        roi = np.asarray(roi, np.float32)
        if roi.shape != (n, 2):
            raise ValueError(f"video {self.video_id!r}: roi of shape {roi.shape}, expected ({n}, 2)")
        if "actions" in meta:
            meta = {**meta, "actions": clip_actions(meta["actions"], n, self.video_id)}
        self._rgb.close()
        self._flow.close()
        step, clipped = self._quantise_flow()
        np.save(self.tmp_dir / "roi.npy", roi)
        np.save(self.tmp_dir / "flow_max.npy", self.flow_maxima())
        meta = {**meta, "id": self.video_id, "frames": n, "width": self.width, "height": self.height,
                "flow_step": step, "flow_clipped_fraction": clipped}
        (self.tmp_dir / META).write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
        in_the_way = entry_in_the_way(self.final_dir.parent.parent, self.video_id)
        if in_the_way:
            raise ValueError(in_the_way)
        if not os.path.lexists(self.final_dir):
            os.rename(self.tmp_dir, self.final_dir)
        else:
            _exchange(self.tmp_dir, self.final_dir)
            _remove_quietly(self.tmp_dir)  # now the old entry
        return self.final_dir

    def abort(self) -> None:
        """Discard the temporary folder; never raises, since it runs while another error is being handled."""
        for array in self._arrays:
            array.discard()
        _remove_quietly(self.tmp_dir)

    def __enter__(self) -> VideoEntryWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None or os.path.lexists(self.tmp_dir):
            self.abort()


def clip_actions(actions: Sequence[Sequence[Any]], frames: int, video_id: str) -> list[list[Any]]:
    """Strokes ``[begin, end, move]`` cut to the ``frames`` a video holds; those left empty are dropped.

    A stored stroke never reaches past its video, so no reader sizes a per-frame array by an annotation; more
    than :data:`MAX_ACTIONS` strokes is refused, naming the video.
    """
    if len(actions) > MAX_ACTIONS:
        raise ValueError(f"video {video_id!r}: {len(actions)} strokes, more than the {MAX_ACTIONS} a video may have")
    clipped, changed = [], 0
    for begin, end, *rest in actions:
        inside = max(0, int(begin)), min(int(end), frames)
        changed += inside != (int(begin), int(end))
        if inside[0] < inside[1]:
            clipped.append([*inside, *rest])
    if changed:
        logger.warning("video %r: %d stroke(s) cut to its %d frames", video_id, changed, frames)
    return clipped


def downsample_flow(flow: np.ndarray) -> np.ndarray:
    """Full-resolution flow ``(H, W, 2)`` → half resolution by 2×2 averaging (values stay in full-res pixels)."""
    h, w = flow.shape[:2]
    return cv2.resize(np.ascontiguousarray(flow, np.float32), (w // 2, h // 2), interpolation=cv2.INTER_AREA)


def write_video_entry(store_root: str | Path, video_id: str, rgb: np.ndarray, flow: np.ndarray, roi: np.ndarray,
                      meta: dict[str, Any]) -> Path:
    """Store one video from in-memory arrays: ``rgb`` uint8 ``(N, H, W, 3)``, ``flow`` float32 ``(N, H, W, 2)``
    (full resolution, pixels), ``roi`` ``(N, 2)``. ``meta`` holds at least split, label, actions, fps."""
    rgb, flow = np.asarray(rgb), np.asarray(flow, np.float32)
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or flow.shape != (*rgb.shape[:3], 2):
        raise ValueError(f"video {video_id!r}: rgb {rgb.shape} and flow {flow.shape} must be (N,H,W,3) and (N,H,W,2)")
    n, height, width = rgb.shape[:3]
    with VideoEntryWriter(store_root, video_id, width, height) as writer:
        for t in range(n):
            writer.add(rgb_to_yuv420(rgb[t]), downsample_flow(flow[t]))
        return writer.finish(roi, meta)


def complete_video_ids(store_root: str | Path) -> list[str]:
    """Ids of the complete video folders (those holding meta.json), sorted; names that are not ids are ignored."""
    videos = Path(store_root) / VIDEOS
    if not videos.is_dir():
        return []
    return sorted(p.name for p in videos.iterdir() if _is_id(p.name) and (p / META).is_file())


def _is_id(name: str) -> bool:
    try:
        check_id(name)
    except ValueError:
        return False
    return True


def remove_incomplete(store_root: str | Path, video_ids: Iterable[str] | None = None) -> list[str]:
    """Delete the temporary folders (``.<id>.<8 hex>.tmp``) an interrupted run left; returns their names.

    With ``video_ids``, only those videos' folders are touched (other shards may be writing theirs). Nothing
    else is removed: entries are moved into place complete, so a folder without meta.json under an id was not
    made here and belongs to someone else.
    """
    videos = Path(store_root) / VIDEOS
    wanted = None if video_ids is None else set(video_ids)
    removed = []
    if videos.is_dir():
        for path in sorted(videos.iterdir()):
            match = _TEMPORARY.fullmatch(path.name)
            if match is None or (wanted is not None and match.group(1) not in wanted):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(inside(videos, path))
                removed.append(path.name)
    return removed


def move_entry(source_root: str | Path, store_root: str | Path, video_id: str) -> bool:
    """Move a complete entry from another store into this one (False: this one has it already).

    It travels under a temporary name and is renamed into place, so a kill during a copy across file systems
    leaves only a temporary folder.
    """
    check_id(video_id)
    source_videos, videos = Path(source_root) / VIDEOS, Path(store_root) / VIDEOS
    target = inside(videos, videos / video_id)
    if (target / META).is_file():
        return False
    in_the_way = entry_in_the_way(store_root, video_id)
    if in_the_way:
        raise ValueError(in_the_way)
    staging = inside(videos, videos / _temporary_name(video_id))
    videos.mkdir(parents=True, exist_ok=True)
    shutil.move(inside(source_videos, source_videos / video_id), staging)
    os.rename(staging, target)
    return True


def flow_scale_from_maxima(maxima: Sequence[np.ndarray], sigmas: float) -> float:
    """Normalisation scale: mean + ``sigmas``·std of the per-frame maximum flow norms."""
    values = np.concatenate([np.asarray(m, np.float64).ravel() for m in maxima]) if maxima else np.zeros(0)
    if values.size == 0:
        return 1.0
    scale = float(values.mean() + sigmas * values.std())
    return scale if scale > 0 else 1.0


def finalize_store(store_root: str | Path, prep: PrepConfig, classes: Sequence[str], *, layout: str = "arrays",
                   source: str | None = None, videos: Sequence[str] | None = None,
                   problems: Sequence[str] = (), preset: str | None = None) -> Path:
    """Write ``manifest.json`` for the complete video folders (or the given ids) and return its path.

    ``flow_scale`` comes from the train split's per-frame flow maxima (all videos when there is no train split).
    ``problems`` (the inputs ``prepare`` skipped, one message each) are recorded for the user.
    """
    root = Path(store_root)
    ids = [check_id(v) for v in videos] if videos is not None else complete_video_ids(root)
    records: dict[str, dict[str, Any]] = {}
    for video_id in ids:
        meta_path = root / VIDEOS / video_id / META
        if not meta_path.is_file():
            raise ValueError(f"{root}: video {video_id!r} is not complete (no {META})")
        records[video_id] = json.loads(meta_path.read_text(encoding="utf-8"))
    train = [v for v, r in records.items() if r.get("split") == "train"]
    scale_ids = train or list(records)
    maxima = [np.load(root / VIDEOS / v / "flow_max.npy") for v in scale_ids]
    manifest = {
        "format": FORMAT, "version": VERSION,
        "preset": preset, "prep": {k: getattr(prep, k) for k in prep.__dataclass_fields__},
        "libraries": library_versions(), "layout": layout, "source": source,
        "classes": list(classes),
        "flow_scale": flow_scale_from_maxima(maxima, prep.flow_scale_sigmas),
        "flow_scale_from": "train" if train else "all",
        "videos": records,
        "problems": list(problems),
    }
    path = root / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return path


# --- checking what is read -------------------------------------------------------------------------------------

class _Fields:
    """Checks of the fields of one JSON record; each failure is a one-line ValueError naming ``where`` and the field."""

    def __init__(self, record: Any, where: str) -> None:
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        self.record, self.where = record, where

    def fail(self, name: str, why: str) -> ValueError:
        return ValueError(f"{self.where}: field {name!r} {why}")

    def integer(self, name: str, low: int, default: int | None = None) -> int:
        value = self.record.get(name, default)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise self.fail(name, f"must be an integer >= {low}, got {value!r}")
        return int(value)

    def number(self, name: str, *, positive: bool, default: float | None = None) -> float:
        value = self.record.get(name, default)
        if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
                or value < 0 or (positive and value == 0)):
            raise self.fail(name, f"must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
        return float(value)

    def text(self, name: str, *, optional: bool, default: str | None = None) -> str | None:
        value = self.record.get(name, default)
        if not (isinstance(value, str) or (optional and value is None)):
            raise self.fail(name, f"must be a string{' or null' if optional else ''}, got {value!r}")
        return value

    def texts(self, name: str, default: list[str] | None = None) -> list[str]:
        value = self.record.get(name, default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, f"must be a list of strings, got {_short(value)}")
        return value

    def require(self, names: Iterable[str]) -> None:
        missing = [n for n in names if n not in self.record]
        if missing:
            raise self.fail(missing[0], "is missing")


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` cut to one short line (a field may hold a huge list)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _check_manifest(manifest: dict[str, Any], path: Path) -> PrepConfig:
    """Every top-level field of a manifest (the video records are checked apart); returns its prep settings."""
    fields = _Fields(manifest, str(path))
    unknown = sorted(set(manifest) - set(_MANIFEST_FIELDS))
    if unknown:
        raise fields.fail(unknown[0], f"is unknown to a {FORMAT} v{VERSION} manifest (its fields: "
                                      f"{', '.join(_MANIFEST_FIELDS)})")
    fields.require(_REQUIRED_FIELDS)
    for name in ("preset", "layout", "source"):
        fields.text(name, optional=True)
    fields.texts("classes")
    fields.texts("problems", default=[])
    fields.number("flow_scale", positive=True)
    if manifest.get("flow_scale_from", "all") not in ("train", "all"):
        raise fields.fail("flow_scale_from", f"must be 'train' or 'all', got {_short(manifest['flow_scale_from'])}")
    libraries = manifest.get("libraries", {})
    if not isinstance(libraries, dict) or not all(isinstance(v, str) for v in libraries.values()):
        raise fields.fail("libraries", f"must map library names to versions, got {_short(libraries)}")
    if not isinstance(manifest["videos"], dict):
        raise fields.fail("videos", f"must map video ids to records, got {_short(manifest['videos'])}")
    prep = manifest["prep"]
    if not isinstance(prep, dict):
        raise fields.fail("prep", f"must hold the preparation settings, got {_short(prep)}")
    specs = {spec.name: spec for spec in field_specs(PrepConfig)}
    for name, value in prep.items():
        if name not in specs:
            raise fields.fail("prep", f"holds the unknown setting {name!r} (known: {', '.join(specs)})")
        try:
            specs[name].check(value)
        except ValueError as exc:
            raise fields.fail("prep", f"is wrong: {exc}") from None
    return PrepConfig(**prep)


def _check_record(record: Any, video_id: str, where: str) -> VideoEntry:
    """One video's record (its meta.json or its copy in the manifest) as an entry, every field used checked.

    Strokes must lie inside the video's frames (the writer cuts them so), so that nothing sized by a stroke can
    exceed the video.
    """
    fields = _Fields(record, where)
    fields.require(("frames", "width", "height", "flow_step"))
    if record.get("id", video_id) != video_id:
        raise fields.fail("id", f"is {_short(record['id'])}, but the entry is {video_id!r}")
    frames = fields.integer("frames", 1)
    width, height = fields.integer("width", 2), fields.integer("height", 2)
    if width % 2 or height % 2:
        raise fields.fail("width" if width % 2 else "height", f"must be even, got {width}x{height}")
    fields.number("flow_step", positive=True)
    fps = fields.number("fps", positive=False, default=0.0)
    split = fields.text("split", optional=False, default="")
    label = fields.text("label", optional=True)
    fields.text("source", optional=False, default="")
    actions = record.get("actions", [])
    if not isinstance(actions, list) or len(actions) > MAX_ACTIONS:
        raise fields.fail("actions", f"must be a list of at most {MAX_ACTIONS} strokes, got "
                                     f"{len(actions) if isinstance(actions, list) else _short(actions)}")
    parsed = []
    for i, action in enumerate(actions, 1):
        if (not isinstance(action, list) or len(action) not in (2, 3)
                or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in action[:2])
                or (len(action) == 3 and not (action[2] is None or isinstance(action[2], str)))):
            raise fields.fail("actions", f"stroke {i} must be [begin, end, class or null], got {_short(action)}")
        begin, end = int(action[0]), int(action[1])
        if not 0 <= begin < end <= frames:
            raise fields.fail("actions", f"stroke {i} [{begin}, {end}) must lie inside the video's {frames} frames")
        parsed.append(Action(begin, end, action[2] if len(action) == 3 else None))
    return VideoEntry(id=video_id, split=split, label=label, actions=tuple(parsed), frames=frames, fps=fps,
                      width=width, height=height, extra=record)


def _array_shape(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and type of a ``.npy`` file from its header (nothing of the data is read)."""
    try:
        array = np.load(path, mmap_mode="r")
        return array.shape, array.dtype
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable array ({exc})") from None


def _check_array(path: Path, expected: tuple[int, ...], dtype: type, meta: Path) -> None:
    """Refuse an array whose frame count, frame size or type is not what the entry's meta.json says."""
    shape, actual = _array_shape(path)
    held = shape[0] if shape else 0
    if held != expected[0]:
        raise ValueError(f"{meta}: field 'frames' is {expected[0]}, but {path.name} holds {held} frames")
    if shape != expected or actual != np.dtype(dtype):
        raise ValueError(f"{meta}: fields 'width' and 'height' do not match {path.name} (a {actual} array of shape "
                         f"{shape}, expected {np.dtype(dtype)} {expected})")


# --- reading ----------------------------------------------------------------------------------------------------

def _window_starts(centres: np.ndarray, size: int, limit: int) -> np.ndarray:
    """Even start offsets of windows of ``size`` centred on ``centres`` and kept inside ``[0, limit)``."""
    starts = np.floor(np.asarray(centres, np.float64) - size / 2).astype(np.int64)
    starts = np.clip(starts, 0, limit - size)
    return starts - starts % 2


class VideoArrays:
    """The memory maps of one video: planes ``y (N, H, W)``, ``u, v (N, H/2, W/2)``, ``flow`` codes, ``roi``.

    Every plane is a strided view of the file's mapping (never a copy), so slicing reads only what it touches.
    """

    def __init__(self, folder: Path, height: int, width: int) -> None:
        # plain ndarray views of the maps: np.memmap's per-slice bookkeeping costs more than the small reads
        raw = np.asarray(np.load(folder / "rgb.npy", mmap_mode="r"))
        n = raw.shape[0]
        self.y = raw[:, :height, :]
        # U then V follow Y in each frame, each a contiguous (H/2, W/2) plane: a strided view, never a copy
        chroma = np.lib.stride_tricks.as_strided(
            raw[:, height:, :], shape=(n, 2, height // 2, width // 2),
            strides=(raw.strides[0], height * width // 4, width // 2, 1), writeable=False)
        self.u, self.v = chroma[:, 0], chroma[:, 1]
        self.flow = np.asarray(np.load(folder / "flow.npy", mmap_mode="r"))
        self.roi = np.load(folder / "roi.npy")


class Store:
    """A prepared store opened for reading. See the module docstring for the layout.

    Each listed video's record is read from its own ``meta.json``, which describes its arrays even when the
    entry was rebuilt after the manifest was written (a re-run of ``prepare`` that did not finish); a manifest
    naming a video whose folder is missing or incomplete is refused.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        manifest_path = self.root / MANIFEST
        if not manifest_path.is_file():
            raise ValueError(f"{self.root}: not a prepared store (no {MANIFEST}; run `tstcnn prepare`)")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{manifest_path}: unreadable manifest ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"{manifest_path}: not a {FORMAT} manifest")
        if manifest.get("version") != VERSION:
            raise ValueError(f"{manifest_path}: store version {manifest.get('version')}, this tstcnn reads {VERSION}")
        if not isinstance(manifest.get("videos"), dict):
            raise ValueError(f"{manifest_path}: no table of videos")
        try:
            for video_id in manifest["videos"]:
                check_id(video_id)
        except ValueError as exc:
            raise ValueError(f"{manifest_path}: {exc}; the manifest was not written by tstcnn prepare") from None
        self.prep = _check_manifest(manifest, manifest_path)
        for video_id, record in manifest["videos"].items():
            _check_record(record, video_id, f"{manifest_path}: video {video_id!r}")
        self.manifest = manifest
        self.classes: tuple[str, ...] = tuple(manifest["classes"])
        self.flow_scale = float(manifest["flow_scale"])
        records = self._read_records(sorted(manifest["videos"]))
        self._entries = {vid: self._entry_from_record(vid, rec) for vid, rec in records.items()}
        self._arrays: dict[str, VideoArrays] = {}

    def _read_records(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Each video's ``meta.json``; ValueError naming the first videos that have none."""
        records, missing = {}, []
        for video_id in ids:
            meta_path = self.root / VIDEOS / video_id / META
            try:
                records[video_id] = json.loads(meta_path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                missing.append(video_id)
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"{meta_path}: unreadable ({exc})") from None
        if missing:
            names = ", ".join(missing[:3]) + (" …" if len(missing) > 3 else "")
            raise ValueError(f"{self.root}: {len(missing)} video(s) of the manifest are missing or incomplete: "
                             f"{names}; run `tstcnn prepare` again to complete the store")
        changed = [v for v in ids if records[v] != self.manifest["videos"][v]]
        if changed:
            logger.warning("%s: %d video(s) changed since the manifest was written (%s): read as they are now; "
                           "run `tstcnn prepare` again to update the manifest", self.root, len(changed),
                           ", ".join(map(repr, changed[:3])) + (" …" if len(changed) > 3 else ""))
        return records

    def _entry_from_record(self, video_id: str, record: dict[str, Any]) -> VideoEntry:
        """The entry of a video's meta.json, checked against its frames array (the rest is checked when opened)."""
        meta = self.root / VIDEOS / video_id / META
        entry = _check_record(record, video_id, str(meta))
        _check_array(meta.parent / "rgb.npy", (entry.frames, entry.height * 3 // 2, entry.width), np.uint8, meta)
        return entry

    def __len__(self) -> int:
        return len(self._entries)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for data-loader workers without the opened memory maps (each worker reopens its own)."""
        return {**self.__dict__, "_arrays": {}}

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r}, videos={len(self)}, flow={self.prep.flow}, width={self.prep.width})"

    def videos(self, split: str | None = None) -> list[VideoEntry]:
        """Entries sorted by id, optionally of one split."""
        return [e for e in self._entries.values() if split is None or e.split == split]

    def entry(self, video_id: str) -> VideoEntry:
        try:
            return self._entries[video_id]
        except KeyError:
            raise KeyError(f"{self.root}: no video {video_id!r} in the store") from None

    def arrays(self, video_id: str) -> VideoArrays:
        """The memory-mapped planes of a video (opened once per process), for readers with their own cropping."""
        return self._open(video_id)

    def _open(self, video_id: str) -> VideoArrays:
        arrays = self._arrays.get(video_id)
        if arrays is None:
            entry = self.entry(video_id)
            folder = self.root / VIDEOS / video_id
            n, h, w = entry.frames, entry.height, entry.width
            for name, shape, dtype in (("flow.npy", (n, h // 2, w // 2, 2), np.int8), ("roi.npy", (n, 2), np.float32)):
                _check_array(folder / name, shape, dtype, folder / META)
            arrays = VideoArrays(folder, h, w)
            self._arrays[video_id] = arrays
        return arrays

    def close(self) -> None:
        """Drop the memory maps this process opened (the disk space of a deleted store is freed once none is left)."""
        self._arrays.clear()

    def roi(self, video_id: str) -> np.ndarray:
        """The smoothed ROI centres ``(N, 2)`` (x, y) of a video."""
        return self._open(video_id).roi

    def flow_step(self, video_id: str) -> float:
        """The flow value (pixels) of the stored code 1; code q stands for sign(q)·q²·step."""
        return float(self.entry(video_id).extra["flow_step"])

    def flow_table(self, video_id: str) -> np.ndarray:
        """Lookup table from the stored int8 codes (viewed as uint8) to flow in pixels."""
        codes = np.arange(256, dtype=np.uint8).view(np.int8).astype(np.float32)
        return np.sign(codes) * codes**2 * np.float32(self.flow_step(video_id))

    def read_clip(self, video_id: str, start: int, length: int, size: tuple[int, int],
                  modalities: Sequence[str] = ("rgb", "flow"), centre: np.ndarray | None = None
                  ) -> dict[str, np.ndarray]:
        """Read frames ``start … start+length-1`` cropped to ``size`` (h, w) around the ROI.

        Returns ``rgb`` uint8 ``(length, h, w, 3)`` and/or ``flow`` float32 ``(length, h, w, 2)`` in pixels (not
        normalised). Windows are centred per frame on the smoothed ROI (or ``centre``: one (x, y) or one per
        frame), kept inside the frame, at even offsets; frames outside ``[0, N)`` repeat the edge frame.
        """
        entry = self.entry(video_id)
        unknown = set(modalities) - {"rgb", "flow"}
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; allowed: rgb, flow")
        h, w = int(size[0]), int(size[1])
        he, we = h + h % 2, w + w % 2  # crops are read at even sizes, then trimmed
        if he > entry.height or we > entry.width or h <= 0 or w <= 0:
            raise ValueError(f"crop {h}x{w} does not fit video {video_id!r} of {entry.height}x{entry.width}")
        arrays = self._open(video_id)
        frames = np.clip(np.arange(start, start + length), 0, entry.frames - 1)
        centres = arrays.roi[frames] if centre is None else np.broadcast_to(np.asarray(centre, np.float64),
                                                                             (length, 2))
        xs = _window_starts(centres[:, 0], we, entry.width)
        ys = _window_starts(centres[:, 1], he, entry.height)
        out: dict[str, np.ndarray] = {}
        if "rgb" in modalities:
            y = np.empty((length, he, we), np.uint8)
            u = np.empty((length, he // 2, we // 2), np.uint8)
            v = np.empty_like(u)
            for i, (f, x0, y0) in enumerate(zip(frames, xs, ys)):
                y[i] = arrays.y[f, y0:y0 + he, x0:x0 + we]
                u[i] = arrays.u[f, y0 // 2:(y0 + he) // 2, x0 // 2:(x0 + we) // 2]
                v[i] = arrays.v[f, y0 // 2:(y0 + he) // 2, x0 // 2:(x0 + we) // 2]
            out["rgb"] = yuv420_to_rgb(y, u, v)[:, :h, :w]
        if "flow" in modalities:
            table = self.flow_table(video_id)
            flow = np.empty((length, he, we, 2), np.float32)
            for i, (f, x0, y0) in enumerate(zip(frames, xs, ys)):
                codes = arrays.flow[f, y0 // 2:(y0 + he) // 2, x0 // 2:(x0 + we) // 2]
                flow[i] = cv2.resize(table[codes.view(np.uint8)], (we, he), interpolation=cv2.INTER_LINEAR)
            out["flow"] = flow[:, :h, :w]
        return out

"""The annotation project: a folder of videos and one SQLite file of strokes marked by several annotators.

``PROJECT/project.sqlite`` holds the class list, the videos (frame counts decoded from the originals) and the
strokes, with a history of each annotator's changes for undo. ``PROJECT/videos/`` holds the videos (copied or
linked in), ``PROJECT/proxies/`` the browser-playable proxies (:mod:`tstcnn.annotate.proxy`).

The database runs in WAL mode with a busy timeout, so the web page and a command line can use it at once; every
save is one ``BEGIN IMMEDIATE`` transaction, so a crash or a kill during a save loses nothing saved before it and
leaves no half of the save behind. Frames are the original video's decoded frames, ``end`` exclusive, as in the
MediaEval detection XMLs.

Model proposals (status ``proposed``, with confidence and top-3 classes) belong to their own annotator (``model``);
an annotator reviews one by adding their own stroke with ``origin`` set to the proposal: ``accepted`` (unchanged),
``corrected`` (moved or relabelled) or ``rejected``. A rejected row records the decision and is no annotation, so
:meth:`Project.strokes` leaves it out unless asked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tstcnn.io.atomic import atomic_path
from tstcnn.io.ids import check_id
from tstcnn.io.video import VideoError, count_frames, probe
from tstcnn.taxonomy import TTSTROKE21_CLASSES

__all__ = ["DATABASE", "VIDEOS", "PROXIES", "STATUSES", "REVIEW_DECISIONS", "MODEL_ANNOTATOR", "MAX_ANNOTATOR",
           "Video", "Stroke", "Project", "check_annotator"]

logger = logging.getLogger(__name__)

DATABASE = "project.sqlite"
VIDEOS = "videos"
PROXIES = "proxies"
SCHEMA_VERSION = 1
FORMAT = "tstcnn-annotate"
STATUSES: tuple[str, ...] = ("manual", "proposed", "accepted", "corrected", "rejected")
REVIEW_DECISIONS: tuple[str, ...] = ("accepted", "corrected", "rejected")
MODEL_ANNOTATOR = "model"
MAX_ANNOTATOR = 40  # characters; a name shows in lists and becomes part of exported file names
BUSY_TIMEOUT_MS = 10_000
EDITABLE = ("begin", "end", "label", "status", "confidence", "top3")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE videos (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    frames INTEGER NOT NULL CHECK (frames > 0),
    fps REAL NOT NULL CHECK (fps > 0),
    width INTEGER NOT NULL,
    height INTEGER NOT NULL
);
CREATE TABLE strokes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    annotator TEXT NOT NULL,
    begin_frame INTEGER NOT NULL,
    end_frame INTEGER NOT NULL,
    label TEXT NOT NULL,
    confidence REAL,
    top3 TEXT,
    status TEXT NOT NULL,
    origin INTEGER REFERENCES strokes(id) ON DELETE SET NULL,
    CHECK (0 <= begin_frame AND begin_frame < end_frame)
);
CREATE INDEX strokes_by_video ON strokes(video_id, annotator, begin_frame);
CREATE INDEX strokes_by_origin ON strokes(origin);
CREATE TABLE history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    annotator TEXT NOT NULL,
    stroke_id INTEGER NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('add', 'update', 'delete')),
    before TEXT
);
CREATE INDEX history_by_owner ON history(annotator, video_id, id);
"""

_STROKE_COLUMNS = "id, video_id, annotator, begin_frame, end_frame, label, confidence, top3, status, origin"


@dataclass(frozen=True)
class Video:
    """A video of the project: ``name`` is its file name under ``videos/``; ``frames`` the original's decoded count."""

    id: int
    name: str
    frames: int
    fps: float
    width: int
    height: int


@dataclass(frozen=True)
class Stroke:
    """A stroke marked by one annotator: frames ``begin`` to ``end`` (exclusive) of the original video.

    ``confidence`` and ``top3`` (class, score) come with model proposals; ``origin`` is the proposal a reviewed
    stroke came from.
    """

    id: int
    video_id: int
    annotator: str
    begin: int
    end: int
    label: str
    confidence: float | None = None
    top3: tuple[tuple[str, float], ...] | None = None
    status: str = "manual"
    origin: int | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["top3"] = [list(pair) for pair in self.top3] if self.top3 is not None else None
        return data


def check_annotator(name: object) -> str:
    """``name`` if it can name an annotator (non-empty, short, usable in a file name), else a one-line ValueError."""
    if isinstance(name, str) and name != name.strip():
        raise ValueError(f"annotator name {name!r} starts or ends with spaces")
    check_id(name, "annotator name")
    assert isinstance(name, str)
    if len(name) > MAX_ANNOTATOR:
        raise ValueError(f"annotator name {name[:20]!r}… is longer than {MAX_ANNOTATOR} characters")
    return name


def _top3(value: object) -> tuple[tuple[str, float], ...] | None:
    """Normalise top-3 classes given as pairs (or ``{"class", "score"}`` rows) to a tuple of (str, float)."""
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValueError(f"top3 must be a list of (class, score) pairs, got {value!r}"[:200])
    pairs = []
    for item in value:
        if isinstance(item, Mapping):
            item = (item.get("class"), item.get("score"))
        if not isinstance(item, Sequence) or isinstance(item, str) or len(item) != 2:
            raise ValueError(f"top3 entry {item!r} is not a (class, score) pair"[:200])
        name, score = item
        if not isinstance(name, str) or isinstance(score, bool) or not isinstance(score, int | float):
            raise ValueError(f"top3 entry {item!r} is not a (class, score) pair"[:200])
        pairs.append((name, float(score)))
    if len(pairs) > 3:
        raise ValueError(f"top3 holds {len(pairs)} classes; at most 3")
    return tuple(pairs)


def _stroke(row: Sequence[Any]) -> Stroke:
    top3 = tuple((str(c), float(s)) for c, s in json.loads(row[7])) if row[7] is not None else None
    return Stroke(row[0], row[1], row[2], row[3], row[4], row[5], row[6], top3, row[8], row[9])


def _corrupt(path: Path, exc: BaseException) -> ValueError:
    return ValueError(f"{path}: not a readable annotation database ({str(exc).splitlines()[0] if str(exc) else exc!r}"
                      "); restore it from a backup or create a new project")


class Project:
    """An annotation project folder; open it with :meth:`create` or :meth:`open`, close it with :meth:`close`.

    One connection serves the threads of a process (calls are serialised by a lock); other processes open their
    own. Every method that writes does so in one transaction and validates everything before writing: a bad value
    raises a one-line ValueError and changes nothing.
    """

    def __init__(self, root: Path, connection: sqlite3.Connection) -> None:
        self.root = root
        self._db = connection
        self._lock = threading.RLock()
        self._classes = tuple(json.loads(self._meta("classes")))

    # -- opening -------------------------------------------------------------------------------------------------

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                     check_same_thread=False)
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA foreign_keys = ON")
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            logger.warning("%s: the file system refused WAL mode (%s); the page and the command line may wait "
                           "for each other", path, mode)
        connection.execute("PRAGMA synchronous = FULL")  # a saved stroke survives a power cut, not only a kill
        return connection

    @classmethod
    def create(cls, root: str | Path, classes: Sequence[str] | None = None) -> Project:
        """Create a project in ``root`` (made if missing), or open the one already there if its classes match."""
        root = Path(root)
        given = classes is not None
        classes = tuple(classes) if classes is not None else TTSTROKE21_CLASSES
        if not classes or any(not isinstance(c, str) or not c.strip() or c != c.strip() for c in classes):
            raise ValueError("a project's classes must be non-empty names without surrounding spaces")
        if len(set(classes)) != len(classes):
            twice = sorted({c for c in classes if classes.count(c) > 1})
            raise ValueError(f"duplicate class names: {', '.join(twice)}")
        if (root / DATABASE).exists():
            project = cls.open(root)
            if given and project.classes != classes:
                project.close()
                raise ValueError(f"{root} is a project with other classes ({len(project.classes)}); open it without "
                                 "a class list or use another folder")
            return project
        if root.exists() and not root.is_dir():
            raise ValueError(f"{root} exists and is not a folder")
        root.mkdir(parents=True, exist_ok=True)
        (root / VIDEOS).mkdir(exist_ok=True)
        (root / PROXIES).mkdir(exist_ok=True)
        # Built beside the final name and renamed, so a crash never leaves a database without its schema.
        with atomic_path(root / DATABASE) as tmp:
            connection = sqlite3.connect(tmp, isolation_level=None)
            try:
                connection.executescript("BEGIN;" + _SCHEMA + "COMMIT;")
                connection.executemany("INSERT INTO meta VALUES (?, ?)", [
                    ("format", FORMAT), ("version", str(SCHEMA_VERSION)), ("classes", json.dumps(list(classes))),
                    ("revision", "0")])
            finally:
                connection.close()
        logger.info("created annotation project %s (%d classes)", root, len(classes))
        return cls.open(root)

    @classmethod
    def open(cls, root: str | Path) -> Project:
        """Open the project in ``root``; a one-line ValueError when it is not one or its database is unreadable."""
        root = Path(root)
        path = root / DATABASE
        if not path.is_file():
            raise ValueError(f"{root} is not an annotation project (no {DATABASE}); create one with tstcnn annotate")
        try:
            connection = cls._connect(path)
        except sqlite3.DatabaseError as exc:
            raise _corrupt(path, exc) from None
        try:
            check = connection.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("format") != FORMAT:
                raise sqlite3.DatabaseError("no tstcnn-annotate marker")
            if int(meta.get("version", 0)) > SCHEMA_VERSION:
                raise ValueError(f"{path} was written by a newer tstcnn (schema {meta['version']}); upgrade tstcnn")
            (root / VIDEOS).mkdir(exist_ok=True)
            (root / PROXIES).mkdir(exist_ok=True)
            return cls(root, connection)
        except (sqlite3.DatabaseError, KeyError, ValueError) as exc:
            connection.close()
            if isinstance(exc, ValueError) and "newer tstcnn" in str(exc):
                raise
            raise _corrupt(path, exc) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------------------------

    def _meta(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise ValueError(f"{self.root / DATABASE}: no {key!r} in the project's metadata")
        return row[0]

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, taken for writing at once so two writers wait for each other instead of failing."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'revision'")
            self._db.execute("COMMIT")

    def _read(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

    @property
    def classes(self) -> tuple[str, ...]:
        return self._classes

    @property
    def database(self) -> Path:
        return self.root / DATABASE

    # -- videos --------------------------------------------------------------------------------------------------

    def add_video(self, path: str | Path, *, link: bool = False) -> Video:
        """Copy (or symlink, with ``link``) a video into ``videos/`` and record it; frames are counted by decoding.

        A video of the same name already in the project is returned as it is when the files have the same size,
        refused otherwise. An undecodable file raises :class:`~tstcnn.io.video.VideoError` and is not added.
        """
        source = Path(path)
        name = check_id(source.name, "video file name")
        if not source.is_file():
            raise ValueError(f"{source}: no such video file")
        target = self.root / VIDEOS / name
        existing = self._read("SELECT id FROM videos WHERE name = ?", (name,))
        if existing:
            if target.exists() and target.stat().st_size == source.stat().st_size:
                return self.video(existing[0][0])
            raise ValueError(f"{name}: the project already has another video of this name; rename the file")
        info = probe(source)
        frames = count_frames(source)
        if frames < 1:
            raise VideoError(f"{source}: no frames decoded")
        fps = info.fps if info.fps > 0 else 0.0
        if fps <= 0:
            raise VideoError(f"{source}: no frame rate in the header")
        same_file = target.exists() and target.resolve() == source.resolve()
        if not same_file:
            if target.exists() or target.is_symlink():
                raise ValueError(f"{target} exists but is not in the database; move it away or add it by this path")
            if link:
                os.symlink(source.resolve(), target)
            else:
                with atomic_path(target) as tmp:
                    shutil.copyfile(source, tmp)
        try:
            with self._write() as db:
                cursor = db.execute("INSERT INTO videos (name, frames, fps, width, height) VALUES (?, ?, ?, ?, ?)",
                                    (name, frames, fps, info.width, info.height))
        except sqlite3.IntegrityError:
            raise ValueError(f"{name}: another process added a video of this name meanwhile; run again") from None
        except BaseException:
            if not same_file:
                target.unlink(missing_ok=True)
            raise
        logger.debug("added %s (%d frames at %.3f fps, %dx%d)", name, frames, fps, info.width, info.height)
        return Video(int(cursor.lastrowid), name, frames, fps, info.width, info.height)

    def videos(self) -> list[Video]:
        return [Video(*row) for row in self._read("SELECT id, name, frames, fps, width, height FROM videos "
                                                  "ORDER BY name")]

    def video(self, id_or_name: int | str) -> Video:
        """The video with this id (int) or file name (str); KeyError naming it when there is none."""
        column = "id" if isinstance(id_or_name, int) and not isinstance(id_or_name, bool) else "name"
        rows = self._read(f"SELECT id, name, frames, fps, width, height FROM videos WHERE {column} = ?",
                          (id_or_name,))
        if not rows:
            raise KeyError(f"no video {id_or_name!r} in the project")
        return Video(*rows[0])

    def video_path(self, video: Video) -> Path:
        return self.root / VIDEOS / video.name

    # -- strokes -------------------------------------------------------------------------------------------------

    def annotators(self) -> list[str]:
        """Everyone who has a stroke in the project, sorted."""
        return [row[0] for row in self._read("SELECT DISTINCT annotator FROM strokes ORDER BY annotator")]

    def strokes(self, video_id: int | None = None, annotator: str | None = None, *,
                include_rejected: bool = False) -> list[Stroke]:
        """Strokes by video, annotator and begin frame; rejected proposals (review records) only when asked."""
        where, parameters = [], []
        if video_id is not None:
            where.append("video_id = ?")
            parameters.append(video_id)
        if annotator is not None:
            where.append("annotator = ?")
            parameters.append(annotator)
        if not include_rejected:
            where.append("status != 'rejected'")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(f"SELECT {_STROKE_COLUMNS} FROM strokes{clause} "
                          "ORDER BY video_id, annotator, begin_frame, end_frame, id", parameters)
        return [_stroke(row) for row in rows]

    def stroke(self, stroke_id: int) -> Stroke:
        rows = self._read(f"SELECT {_STROKE_COLUMNS} FROM strokes WHERE id = ?", (stroke_id,))
        if not rows:
            raise KeyError(f"no stroke {stroke_id} in the project")
        return _stroke(rows[0])

    def _checked(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The stroke fields of ``data`` validated and normalised; one-line ValueError otherwise."""
        unknown = set(data) - {"video_id", "annotator", "begin", "end", "label", "confidence", "top3", "status",
                               "origin"}
        if unknown:
            raise ValueError(f"unknown stroke fields: {', '.join(sorted(unknown))}")
        for field in ("video_id", "annotator", "begin", "end", "label"):
            if field not in data:
                raise ValueError(f"a stroke needs {field!r}")
        video_id = data["video_id"]
        if isinstance(video_id, bool) or not isinstance(video_id, int):
            raise ValueError(f"video_id must be an integer, got {video_id!r}")
        video = self.video(video_id)
        annotator = check_annotator(data["annotator"])
        begin, end = data["begin"], data["end"]
        for name, value in (("begin", begin), ("end", end)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be a frame number, got {value!r}")
        if not 0 <= begin < end <= video.frames:
            raise ValueError(f"frames {begin}..{end} are not a stroke of {video.name}: need 0 <= begin < end <= "
                             f"{video.frames} (end exclusive)")
        label = data["label"]
        if label not in self._classes:
            raise ValueError(f"unknown class {label!r}; the project's classes are listed in tstcnn annotate's page")
        status = data.get("status", "manual")
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; allowed: {', '.join(STATUSES)}")
        confidence = data.get("confidence")
        if confidence is not None:
            if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 <= confidence <= 1:
                raise ValueError(f"confidence must be a number in [0, 1], got {confidence!r}")
            confidence = float(confidence)
        top3 = _top3(data.get("top3"))
        origin = data.get("origin")
        if origin is not None:
            if isinstance(origin, bool) or not isinstance(origin, int):
                raise ValueError(f"origin must be a stroke id, got {origin!r}")
            source = self.stroke(origin)
            if source.video_id != video_id:
                raise ValueError(f"origin stroke {origin} belongs to another video")
        return {"video_id": video_id, "annotator": annotator, "begin": begin, "end": end, "label": label,
                "confidence": confidence, "top3": top3, "status": status, "origin": origin}

    @staticmethod
    def _insert(db: sqlite3.Connection, fields: Mapping[str, Any], stroke_id: int | None = None) -> int:
        top3 = json.dumps([list(p) for p in fields["top3"]]) if fields["top3"] is not None else None
        cursor = db.execute(
            "INSERT INTO strokes (id, video_id, annotator, begin_frame, end_frame, label, confidence, top3, status, "
            "origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (stroke_id, fields["video_id"], fields["annotator"], fields["begin"], fields["end"], fields["label"],
             fields["confidence"], top3, fields["status"], fields["origin"]))
        return int(cursor.lastrowid)

    @staticmethod
    def _log(db: sqlite3.Connection, stroke: Stroke | Mapping[str, Any], action: str, stroke_id: int,
             before: Stroke | None) -> None:
        video_id = stroke.video_id if isinstance(stroke, Stroke) else stroke["video_id"]
        annotator = stroke.annotator if isinstance(stroke, Stroke) else stroke["annotator"]
        db.execute("INSERT INTO history (video_id, annotator, stroke_id, action, before) VALUES (?, ?, ?, ?, ?)",
                   (video_id, annotator, stroke_id, action, json.dumps(before.to_json()) if before else None))

    def add_stroke(self, video_id: int, annotator: str, begin: int, end: int, label: str, *,
                   confidence: float | None = None, top3: Sequence[tuple[str, float]] | None = None,
                   status: str = "manual", origin: int | None = None) -> Stroke:
        """Record one stroke (undoable by its annotator)."""
        fields = self._checked({"video_id": video_id, "annotator": annotator, "begin": begin, "end": end,
                                "label": label, "confidence": confidence, "top3": top3, "status": status,
                                "origin": origin})
        with self._write() as db:
            stroke_id = self._insert(db, fields)
            self._log(db, fields, "add", stroke_id, None)
        return self.stroke(stroke_id)

    def add_strokes(self, rows: Sequence[Mapping[str, Any]]) -> list[Stroke]:
        """Record many strokes in one transaction (imports): all of them or, on the first bad row, none.

        Each row is a mapping with the arguments of :meth:`add_stroke` (``video_id``, ``annotator``, ``begin``,
        ``end``, ``label`` and optionally ``confidence``, ``top3``, ``status``, ``origin``). Imports are not in the
        undo history.
        """
        checked = []
        for index, row in enumerate(rows):
            try:
                checked.append(self._checked(row))
            except (ValueError, KeyError) as exc:
                raise ValueError(f"stroke {index + 1} of {len(rows)}: {str(exc).strip(chr(34) + chr(39))}") from None
        with self._write() as db:
            ids = [self._insert(db, fields) for fields in checked]
        return [self.stroke(i) for i in ids]

    def _owned(self, stroke_id: int, annotator: str) -> Stroke:
        check_annotator(annotator)
        stroke = self.stroke(stroke_id)
        if stroke.annotator != annotator:
            raise ValueError(f"stroke {stroke_id} is {stroke.annotator}'s; {annotator} cannot change it")
        return stroke

    def update_stroke(self, stroke_id: int, annotator: str, **changes: Any) -> Stroke:
        """Move, relabel or re-status one of ``annotator``'s strokes (undoable).

        An ``accepted`` proposal whose frames or class change becomes ``corrected``.
        """
        before = self._owned(stroke_id, annotator)
        unknown = set(changes) - set(EDITABLE)
        if unknown:
            raise ValueError(f"cannot change {', '.join(sorted(unknown))} of a stroke; allowed: {', '.join(EDITABLE)}")
        fields = {**before.to_json(), **changes}
        fields.pop("id")
        if (before.status == "accepted" and "status" not in changes
                and (fields["begin"], fields["end"], fields["label"]) != (before.begin, before.end, before.label)):
            fields["status"] = "corrected"
        fields = self._checked(fields)
        with self._write() as db:
            top3 = json.dumps([list(p) for p in fields["top3"]]) if fields["top3"] is not None else None
            db.execute("UPDATE strokes SET begin_frame = ?, end_frame = ?, label = ?, confidence = ?, top3 = ?, "
                       "status = ? WHERE id = ?",
                       (fields["begin"], fields["end"], fields["label"], fields["confidence"], top3,
                        fields["status"], stroke_id))
            self._log(db, before, "update", stroke_id, before)
        return self.stroke(stroke_id)

    def delete_stroke(self, stroke_id: int, annotator: str) -> None:
        """Delete one of ``annotator``'s strokes (undoable)."""
        before = self._owned(stroke_id, annotator)
        with self._write() as db:
            db.execute("DELETE FROM strokes WHERE id = ?", (stroke_id,))
            self._log(db, before, "delete", stroke_id, before)

    def review(self, proposal_id: int, annotator: str, decision: str, **changes: Any) -> Stroke:
        """Record ``annotator``'s decision on a model proposal: their own stroke with ``origin`` = the proposal.

        ``accepted`` copies the proposal; ``corrected`` copies it with ``changes`` (``begin``, ``end``, ``label``);
        ``rejected`` records the refusal. A second decision on the same proposal replaces the first (undoable).
        """
        if decision not in REVIEW_DECISIONS:
            raise ValueError(f"unknown decision {decision!r}; allowed: {', '.join(REVIEW_DECISIONS)}")
        check_annotator(annotator)
        proposal = self.stroke(proposal_id)
        if proposal.status != "proposed":
            raise ValueError(f"stroke {proposal_id} is not a model proposal")
        if proposal.annotator == annotator:
            raise ValueError(f"{annotator} cannot review their own proposals")
        unknown = set(changes) - {"begin", "end", "label"}
        if unknown:
            raise ValueError(f"a review changes only begin, end and label, not {', '.join(sorted(unknown))}")
        if decision != "corrected" and changes:
            raise ValueError(f"only a correction changes frames or class, not {decision!r}")
        fields = {"begin": proposal.begin, "end": proposal.end, "label": proposal.label, **changes,
                  "confidence": proposal.confidence, "top3": proposal.top3, "status": decision}
        previous = self._read("SELECT id FROM strokes WHERE origin = ? AND annotator = ?", (proposal_id, annotator))
        if previous:
            return self.update_stroke(previous[0][0], annotator, **fields)
        return self.add_stroke(proposal.video_id, annotator, fields["begin"], fields["end"], fields["label"],
                               confidence=fields["confidence"], top3=fields["top3"], status=decision,
                               origin=proposal_id)

    def undo(self, annotator: str, video_id: int) -> Stroke | None:
        """Undo ``annotator``'s last change on ``video_id``; returns the stroke as it was put back (for an undone
        add: the stroke removed), or None when there is nothing to undo."""
        check_annotator(annotator)
        with self._write() as db:
            row = db.execute("SELECT id, stroke_id, action, before FROM history WHERE annotator = ? AND video_id = ? "
                             "ORDER BY id DESC LIMIT 1", (annotator, video_id)).fetchone()
            if row is None:
                return None
            entry, stroke_id, action, before = row
            db.execute("DELETE FROM history WHERE id = ?", (entry,))
            current = db.execute(f"SELECT {_STROKE_COLUMNS} FROM strokes WHERE id = ?", (stroke_id,)).fetchone()
            if action == "add":
                db.execute("DELETE FROM strokes WHERE id = ?", (stroke_id,))
                return _stroke(current) if current else None
            old = json.loads(before)
            old_top3 = json.dumps(old["top3"]) if old["top3"] is not None else None
            if old["origin"] is not None and db.execute("SELECT 1 FROM strokes WHERE id = ?",
                                                        (old["origin"],)).fetchone() is None:
                old["origin"] = None  # the proposal it came from is gone
            if action == "update":
                db.execute("UPDATE strokes SET begin_frame = ?, end_frame = ?, label = ?, confidence = ?, top3 = ?, "
                           "status = ?, origin = ? WHERE id = ?",
                           (old["begin"], old["end"], old["label"], old["confidence"], old_top3, old["status"],
                            old["origin"], stroke_id))
            else:
                self._insert(db, {**old, "top3": _top3(old["top3"])}, stroke_id)
            restored = db.execute(f"SELECT {_STROKE_COLUMNS} FROM strokes WHERE id = ?", (stroke_id,)).fetchone()
        return _stroke(restored) if restored else None

    def revision(self) -> int:
        """A number that changes whenever any process commits a change: the page polls it to refresh."""
        return int(self._read("SELECT value FROM meta WHERE key = 'revision'")[0][0])

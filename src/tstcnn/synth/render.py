"""Rendering a clip or a long video: programs placed in time, posed, projected and drawn frame by frame.

Everything random comes from one ``numpy`` generator, so a clip is a pure function of its seed.
Frames are produced one at a time (:func:`iter_video`) so that long detection videos stream into the
encoder without being held in memory; :func:`render_clip` collects a short clip for tests and the
preview.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from tstcnn.io.mediaeval import Action
from tstcnn.synth.nuisance import Nuisance, sample_body, sample_nuisance, sample_timing
from tstcnn.synth.player import L_WRIST, RACKET_CENTRE, Body, Joints, Pose, draw_player, pose_joints
from tstcnn.synth.scene import TABLE_HEIGHT, TABLE_LENGTH, Camera, DrawOp, draw_background, draw_ops, look_at, table_ops
from tstcnn.synth.strokes import BallPlan, Key, Program, Segment, build_pose, program_for
from tstcnn.taxonomy import NEGATIVE, TTSTROKE21_CLASSES

__all__ = ["MIN_SIZE", "VideoPlan", "RenderedClip", "clip_rng", "check_size", "plan_video", "iter_video",
           "render_clip"]

MIN_SIZE = (64, 36)
BALL_RADIUS = 0.02 * 1.6  # drawn larger than life, like the racket
TABLE_TOP = TABLE_HEIGHT + 0.02


def clip_rng(seed: int, *parts: object) -> np.random.Generator:
    """A generator determined by the seed and the clip's identity (split, class, index), nothing else."""
    digest = hashlib.sha256("/".join(map(str, (seed, *parts))).encode()).digest()
    return np.random.default_rng(np.random.SeedSequence(list(np.frombuffer(digest[:16], dtype=np.uint32))))


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    """Validate a (width, height) frame size; the scene needs at least :data:`MIN_SIZE`."""
    width, height = (int(v) for v in size)
    if width < MIN_SIZE[0] or height < MIN_SIZE[1]:
        raise ValueError(f"size {width}x{height} is too small to draw the scene (at least "
                         f"{MIN_SIZE[0]}x{MIN_SIZE[1]})")
    if width % 2 or height % 2:
        raise ValueError(f"size {width}x{height}: H.264 needs an even width and height")
    return width, height


@dataclass
class VideoPlan:
    """Everything needed to draw the frames of one video."""

    size: tuple[int, int]
    fps: float
    total: int
    segments: list[Segment]
    nuisance: Nuisance
    body: Body
    joints: Joints
    camera: Camera
    background: np.ndarray
    margin: int
    shake: np.ndarray  # (N, 2) integer pixel offsets
    ball: np.ndarray  # (N, 3) world position, NaN when hidden
    distractor: tuple[Joints, Body] | None
    table: list[DrawOp | None]  # drawn per frame over the distractor (empty: in the background)
    noise: tuple[np.ndarray, np.ndarray]
    noise_offsets: np.ndarray  # (N, 2)

    @property
    def actions(self) -> list[Action]:
        """The strokes (negatives excluded), frames [begin, end)."""
        return [Action(s.stroke_begin, s.stroke_end, s.name) for s in self.segments if s.name != NEGATIVE]


def _segments(names: Sequence[str], rng: np.random.Generator, fps: float, idle: tuple[float, float] | None
              ) -> list[Segment]:
    segments, cursor, base = [], 0, np.zeros(2)
    for name in names:
        program = program_for(name, rng, base_y=float(base[1]))
        before, stroke, after, amplitude = sample_timing(rng, fps, program.duration)
        if idle is not None:
            before = max(1, round(rng.uniform(*idle) * fps))
        seg = Segment(name, program, cursor, before, stroke, after, amplitude, base=(float(base[0]), float(base[1])),
                      wobble=rng.uniform(0, 2 * np.pi, 4))
        segments.append(seg)
        cursor = seg.end
        base = base + program.keys[-1].root
    return segments


def _camera(nuisance: Nuisance, player: np.ndarray, size: tuple[int, int]) -> Camera:
    width, height = size
    a = np.deg2rad(nuisance.camera_azimuth)
    position = np.array([player[0] + nuisance.camera_distance * np.cos(a),
                         player[1] - nuisance.camera_distance * np.sin(a), nuisance.camera_height])
    target = np.array([player[0] + nuisance.target[0], player[1] + nuisance.target[1], nuisance.target[2]])
    focal = nuisance.fill * height * np.linalg.norm(target - position) / 1.75
    return look_at(position, target, focal, (width / 2, height / 2), nuisance.roll)


def _arcs(t: np.ndarray, times: Sequence[float], points: Sequence[np.ndarray], heights: Sequence[float]
          ) -> np.ndarray:
    """Ball positions along consecutive parabolic hops through ``points``; NaN outside them."""
    out = np.full((len(t), 3), np.nan)
    for i in range(len(times) - 1):
        inside = (t >= times[i]) & (t < times[i + 1])
        u = ((t[inside] - times[i]) / (times[i + 1] - times[i]))[:, None]
        p = points[i] + u * (points[i + 1] - points[i])
        p[:, 2] += 4 * heights[i] * u[:, 0] * (1 - u[:, 0])
        out[inside] = p
    return out


def _ball(segments: list[Segment], joints: Joints, total: int, fps: float, player: np.ndarray,
          rng: np.random.Generator) -> np.ndarray:
    ball = np.full((total, 3), np.nan)
    t = np.arange(total) / fps
    for seg in segments:
        plan: BallPlan = seg.program.ball
        if plan.kind == "none":
            continue
        frames = np.arange(seg.start, total)
        contact = min(total - 1, int(round(seg.stroke_begin + plan.contact * seg.stroke)))
        tc = contact / fps
        hit = joints.points[contact, RACKET_CENTRE] + joints.face[contact] * 0.03
        side = rng.uniform(-0.6, 0.6, size=4)
        far = np.array([TABLE_LENGTH / 2 + 0.3, side[0], 0.95])
        bounce = np.array([-rng.uniform(0.5, 0.95), side[1], TABLE_TOP])
        slow = 1.0 / plan.out_speed
        out = [(tc + 0.45 * slow, np.array([rng.uniform(0.6, 1.1), side[2], TABLE_TOP]), plan.out_height),
               (tc + 0.8 * slow, np.array([TABLE_LENGTH / 2 + 1.6, side[3], 0.4]), plan.out_height * 0.6)]
        if plan.kind == "toss":
            release = int(round(seg.stroke_begin + plan.release * seg.stroke))
            held = frames[frames < release]
            ball[held] = joints.points[held, L_WRIST] + [0, 0, 0.05]
            start = joints.points[min(release, total - 1), L_WRIST] + [0, 0, 0.05]
            own = np.array([-rng.uniform(0.4, 0.9), side[1], TABLE_TOP])
            hops = [(release / fps, start, 0.45), (tc, hit, 0.04), (tc + 0.2 * slow, own, 0.15), *out]
        elif plan.kind == "incoming":
            hops = [(tc - 0.7, far, 0.25), (tc - 0.22, bounce, 0.18), (tc, hit, 0.0), *out]
        elif plan.kind == "pass":
            gone = np.array([player[0] - 1.5, player[1] + rng.choice([-1.2, 1.2]), 0.3])
            hops = [(tc - 0.7, far, 0.25), (tc - 0.22, bounce, 0.25), (tc + 0.4, gone, 0.0)]
        elif plan.kind == "pickup":
            lying = joints.points[contact, L_WRIST] * [1, 1, 0] + [0, 0, 0.02]
            before, after = frames[frames < contact], frames[(frames >= contact) & (frames < seg.end)]
            ball[before] = lying
            ball[after] = joints.points[after, L_WRIST] + [0, 0, 0.04]
            continue
        else:
            raise ValueError(f"unknown ball plan {plan.kind!r}")
        times, points, heights = zip(*hops)
        path = _arcs(t[frames], times, points, heights[:-1])
        shown = ~np.isnan(path[:, 0])
        ball[frames[shown]] = path[shown]
    return ball


def _distractor(kind: str, rng: np.random.Generator, nuisance: Nuisance, camera: Camera, player: np.ndarray,
                total: int, fps: float) -> tuple[Joints, Body] | None:
    if kind == "none":
        return None
    body = sample_body(rng, nuisance.light, bool(rng.random() < 0.15))
    if kind == "opponent":  # a second player at the far end, playing its own strokes
        names = [TTSTROKE21_CLASSES[i] for i in rng.integers(0, 20, size=max(1, total // int(fps * 0.8) + 1))]
        segments = _segments(names, rng, fps, idle=(0.1, 0.6))
        pose = build_pose(segments, max(total, segments[-1].end), fps, rng.normal(0, 10), 0.55)
        position = (TABLE_LENGTH / 2 + rng.uniform(0.4, 1.2), rng.uniform(-0.5, 0.5))
        return pose_joints(_trim(pose, total), body, position, 180.0), body
    # A passer-by walking across behind the player.
    forward = camera.rotation[2] * [1, 1, 0]
    forward /= np.linalg.norm(forward)
    distance = 1.3 * total / fps
    heading = np.rad2deg(np.arctan2(forward[0], -forward[1])) * rng.choice([-1, 1])
    keys = (Key(0.0, (0.3, -0.3, 0.85), root=(-distance / 2, 0.0)), Key(1.0, (0.3, -0.3, 0.85),
                                                                          root=(distance / 2, 0.0)))
    program = Program(keys, total / fps, BallPlan("none"), steps=max(1, int(distance / 0.7)))
    segment = Segment(NEGATIVE, program, 0, 0, total, 0, 1.0, wobble=rng.uniform(0, 6, 4))
    pose = build_pose([segment], total, fps, 0.0, 0.35)
    centre = player + forward[:2] * rng.uniform(2.0, 4.0) + rng.uniform(-1.5, 1.5, size=2)
    return pose_joints(pose, body, (float(centre[0]), float(centre[1])), float(heading)), body


def _trim(pose: Pose, total: int) -> Pose:
    return Pose(**{name: getattr(pose, name)[:total] for name in Pose.__dataclass_fields__})


def plan_video(names: Sequence[str], rng: np.random.Generator, size: tuple[int, int], fps: float,
               left_handed: float = 0.15, idle: tuple[float, float] | None = None) -> VideoPlan:
    """Draw everything random about a video holding the programs of ``names`` in sequence."""
    size = check_size(size)
    width, height = size
    nuisance, body = sample_nuisance(rng, left_handed)
    segments = _segments(names, rng, fps, idle)
    total = segments[-1].end
    pose = build_pose(segments, total, fps, nuisance.stance_jitter, nuisance.feet_width)
    player = np.array([-TABLE_LENGTH / 2 - nuisance.player_distance, nuisance.player_offset])
    joints = pose_joints(pose, body, (float(player[0]), float(player[1])), 0.0)
    camera = _camera(nuisance, player, size)
    scale = width / 640
    margin = int(np.ceil(nuisance.shake * scale * 2.5)) + 1
    padded = camera.shifted(margin, margin)
    background = draw_background(padded, (width + 2 * margin, height + 2 * margin), nuisance.style, nuisance.light, rng)
    table = table_ops(camera, nuisance.style)
    distractor = _distractor(nuisance.distractor, rng, nuisance, camera, player, total, fps)
    if distractor is None:  # nothing is drawn behind the table: it becomes part of the background
        draw_ops(background, table_ops(padded, nuisance.style))
        table = []
    # Shake: smooth random wander, rounded to whole pixels so the background is a plain crop.
    wander = np.cumsum(rng.normal(0, 1, size=(total + 8, 2)), axis=0)
    wander = np.convolve(np.ones(8) / 8, wander[:, 0], "valid")[:total], np.convolve(
        np.ones(8) / 8, wander[:, 1], "valid")[:total]
    wander = np.stack(wander, axis=1)
    wander -= wander.mean(axis=0)
    wander /= max(np.abs(wander).max(), 1e-6)
    shake = np.clip(np.round(wander * nuisance.shake * scale * 2), -margin, margin).astype(int)
    ball = _ball(segments, joints, total, fps, player, rng)
    grain = rng.normal(0, nuisance.noise, size=(height + 16, width + 16, 3))
    noise = (np.clip(grain, 0, 255).astype(np.uint8), np.clip(-grain, 0, 255).astype(np.uint8))
    offsets = rng.integers(0, 16, size=(total, 2))
    return VideoPlan(size, fps, total, segments, nuisance, body, joints, camera, background, margin, shake, ball,
                     distractor, table, noise, offsets)


def iter_video(plan: VideoPlan) -> Iterator[np.ndarray]:
    """The frames of a planned video, RGB ``uint8`` (H, W, 3), one at a time."""
    width, height = plan.size
    m = plan.margin
    previous = None
    for i in range(plan.total):
        dx, dy = (int(v) for v in plan.shake[i])
        frame = plan.background[m - dy:m - dy + height, m - dx:m - dx + width].copy()
        offset = (float(dx), float(dy))
        if plan.distractor is not None:
            draw_player(frame, plan.camera, plan.distractor[0], i, plan.distractor[1], offset)
        draw_ops(frame, plan.table, dx, dy)
        draw_player(frame, plan.camera, plan.joints, i, plan.body, offset)
        if not np.isnan(plan.ball[i, 0]):
            (u, v), depth = plan.camera.project(plan.ball[i], offset)
            if depth > 0.2:
                radius = max(1.0, plan.camera.focal * BALL_RADIUS / depth)
                cv2.circle(frame, (int(u * 4), int(v * 4)), int(radius * 4), plan.nuisance.ball_colour, -1,
                           cv2.LINE_AA, 2)
        clean = frame
        if previous is not None and plan.nuisance.blur > 0:
            frame = cv2.addWeighted(frame, 1 - plan.nuisance.blur, previous, plan.nuisance.blur, 0)
        previous = clean
        ox, oy = plan.noise_offsets[i]
        frame = cv2.add(frame, plan.noise[0][oy:oy + height, ox:ox + width])
        frame = cv2.subtract(frame, plan.noise[1][oy:oy + height, ox:ox + width])
        yield frame


@dataclass(frozen=True)
class RenderedClip:
    """A rendered trimmed clip: frames (N, H, W, 3) and the stroke's frames [begin, end)."""

    frames: np.ndarray
    label: str
    action: Action


def render_clip(name: str, seed: int = 0, size: tuple[int, int] = (640, 360), fps: float = 120.0,
                left_handed: float = 0.15, rng: np.random.Generator | None = None) -> RenderedClip:
    """Render one trimmed clip of class ``name`` (a stroke with idle time around it) in memory."""
    rng = clip_rng(seed, "clip", name) if rng is None else rng
    plan = plan_video([name], rng, size, fps, left_handed)
    seg = plan.segments[0]
    return RenderedClip(np.stack(list(iter_video(plan))), name, Action(seg.stroke_begin, seg.stroke_end, name))

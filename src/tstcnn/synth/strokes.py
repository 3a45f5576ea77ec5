"""The 20 strokes and the rejection class as kinematic programs.

A program is a list of key poses at phases 0…1 of the stroke (racket wrist, racket face normal and
handle direction, shoulder twist, knee bend, spine lean, free hand, body offset), interpolated with
monotone cubic splines, plus what the ball does. What separates the classes is what separates real
strokes:

* serve: the free hand tosses the ball, the racket strikes it on the way down; offensive and
  defensive strokes meet a ball arriving from the far side;
* forehand: racket on the racket-hand side, forehand rubber; backhand: racket across the body;
* backspin high→low with an open face; topspin low→high with a closed face; sidespin a lateral
  sweep; loop a fast, large low→high brush; hit a flat forward drive; flip a short wrist flick over
  the table; push a short forward-down stroke near the table; block a short stop in front of the
  body; defensive backspin (chop) a long high→low stroke after stepping away from the table.

Negatives (the rejection class): waiting and bouncing on the feet, walking along the table, picking
a ball up, a ball bouncing past with no stroke, shadow footwork.

Coordinates are those of :class:`tstcnn.synth.player.Pose` (right-handed player of 1.75 m).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np
from scipy.interpolate import PchipInterpolator

from tstcnn.synth.player import Pose
from tstcnn.taxonomy import NEGATIVE, TTSTROKE21_CLASSES

__all__ = ["Key", "Program", "BallPlan", "program_for", "NEGATIVE_KINDS", "Segment", "build_pose"]

READY_HAND = (0.40, -0.30, 1.00)
READY_FREE = (0.28, 0.30, 1.00)
FLAT, OPEN, CLOSED = (1.0, 0.0, 0.15), (0.55, 0.0, 0.85), (0.7, 0.0, -0.7)
FH_HANDLE, BH_HANDLE, UP_HANDLE = (0.15, -1.0, 0.45), (0.2, 1.0, 0.35), (0.35, -0.5, 0.8)


@dataclass(frozen=True)
class Key:
    """A key pose at ``phase``; unset fields keep the ready pose's value."""

    phase: float
    hand: tuple[float, float, float] = READY_HAND
    face: tuple[float, float, float] = FLAT
    handle: tuple[float, float, float] = UP_HANDLE
    twist: float = 0.0
    knee: float = 0.08
    lean: float = 15.0
    free: tuple[float, float, float] | None = None  # None: balances opposite the racket hand
    root: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class BallPlan:
    """What the ball does: ``toss`` (serve), ``incoming`` (struck at ``contact``), ``pass`` (no stroke),
    ``pickup`` (lies on the floor until the free hand takes it) or ``none``."""

    kind: str
    contact: float = 0.5  # phase of the racket contact
    release: float = 0.3  # phase the toss leaves the hand
    out_speed: float = 1.0  # relative speed of the returned ball
    out_height: float = 0.2  # apex of the return above the table, metres


@dataclass(frozen=True)
class Program:
    keys: tuple[Key, ...]
    duration: float  # seconds at tempo 1
    ball: BallPlan
    stance: float = 0.0  # body yaw, degrees
    backhand: bool = False
    bounce: float = 0.0  # amplitude of bouncing on the feet, metres
    steps: int = 0  # foot steps taken when the body moves


def _serve(backswing: Key, contact: Key, follow: Key, backhand: bool, duration: float = 0.85) -> Program:
    toss = dict(free=(0.32, 0.22, 0.98))
    keys = (Key(0.0, **toss), Key(0.15, **toss), Key(0.33, free=(0.34, 0.22, 1.38)), backswing, contact, follow,
            Key(1.0, free=READY_FREE))
    return Program(keys, duration, BallPlan("toss", contact=contact.phase, release=0.33, out_speed=0.8),
                   stance=20.0 if backhand else -35.0, backhand=backhand)


def _rally(keys: tuple[Key, ...], contact: float, duration: float, backhand: bool, speed: float, height: float,
           stance: float = 0.0) -> Program:
    return Program((Key(0.0), *keys, Key(1.0)), duration, BallPlan("incoming", contact, out_speed=speed,
                                                                    out_height=height), stance=stance,
                   backhand=backhand)


def _strokes() -> dict[str, Program]:
    fh, bh = FH_HANDLE, BH_HANDLE
    lean_in = dict(lean=38.0, knee=0.14)
    return {
        "Serve Forehand Backspin": _serve(
            Key(0.42, (0.05, -0.56, 1.28), OPEN, fh, -30, 0.12, free=(0.3, 0.3, 1.2)),
            Key(0.66, (0.38, -0.25, 0.92), OPEN, fh, -5, 0.15),
            Key(0.82, (0.58, -0.08, 0.86), OPEN, fh, 10, 0.12), backhand=False),
        "Serve Forehand Topspin": _serve(
            Key(0.42, (0.05, -0.56, 0.80), CLOSED, fh, -30, 0.16, free=(0.3, 0.3, 1.2)),
            Key(0.66, (0.36, -0.30, 0.98), CLOSED, fh, -5, 0.12),
            Key(0.82, (0.48, -0.08, 1.30), CLOSED, fh, 15, 0.08), backhand=False),
        "Serve Forehand Sidespin": _serve(
            Key(0.42, (0.18, -0.72, 1.05), (0.3, 1.0, 0.0), (0.2, -0.2, -1.0), -30, 0.1, free=(0.3, 0.3, 1.2)),
            Key(0.66, (0.36, -0.25, 1.00), (0.3, 1.0, 0.0), (0.3, -0.2, -1.0), 0, 0.1),
            Key(0.82, (0.34, 0.28, 1.00), (0.3, 1.0, 0.0), (0.3, 0.2, -1.0), 20, 0.1), backhand=False),
        "Serve Forehand Loop": _serve(
            Key(0.46, (-0.22, -0.66, 0.52), CLOSED, fh, -48, 0.3, free=(0.3, 0.3, 1.2)),
            Key(0.66, (0.32, -0.35, 1.00), CLOSED, fh, -5, 0.15),
            Key(0.76, (0.36, 0.05, 1.86), CLOSED, fh, 36, 0.02), backhand=False),
        "Serve Backhand Backspin": _serve(
            Key(0.42, (0.25, 0.32, 1.22), OPEN, bh, 28, 0.12, free=(0.2, 0.4, 1.2)),
            Key(0.66, (0.42, -0.05, 0.94), OPEN, bh, 5, 0.15),
            Key(0.82, (0.56, -0.25, 0.85), OPEN, bh, -10, 0.12), backhand=True),
        "Serve Backhand Topspin": _serve(
            Key(0.42, (0.22, 0.26, 0.80), CLOSED, bh, 26, 0.16, free=(0.2, 0.4, 1.2)),
            Key(0.66, (0.40, -0.05, 0.98), CLOSED, bh, 5, 0.12),
            Key(0.82, (0.50, -0.32, 1.28), CLOSED, bh, -14, 0.08), backhand=True),
        "Serve Backhand Sidespin": _serve(
            Key(0.42, (0.30, 0.38, 1.05), (0.3, -1.0, 0.0), (0.2, 0.3, -1.0), 30, 0.1, free=(0.2, 0.4, 1.2)),
            Key(0.66, (0.38, 0.0, 1.00), (0.3, -1.0, 0.0), (0.3, 0.2, -1.0), 5, 0.1),
            Key(0.82, (0.35, -0.48, 1.05), (0.3, -1.0, 0.0), (0.3, -0.2, -1.0), -20, 0.1), backhand=True),
        "Serve Backhand Loop": _serve(
            Key(0.46, (0.10, 0.36, 0.52), CLOSED, bh, 38, 0.28, free=(0.2, 0.4, 1.2)),
            Key(0.66, (0.38, -0.02, 1.00), CLOSED, bh, 5, 0.14),
            Key(0.76, (0.45, -0.42, 1.84), CLOSED, bh, -32, 0.02), backhand=True),
        "Offensive Forehand Hit": _rally((
            Key(0.38, (0.02, -0.60, 1.06), FLAT, fh, -32, 0.12),
            Key(0.52, (0.48, -0.40, 1.08), FLAT, fh, -5, 0.1),
            Key(0.66, (0.60, -0.05, 1.28), FLAT, fh, 22, 0.08)), 0.52, 0.6, False, 1.5, 0.12),
        "Offensive Forehand Loop": _rally((
            Key(0.36, (-0.25, -0.70, 0.52), CLOSED, fh, -52, 0.32),
            Key(0.52, (0.30, -0.45, 1.00), CLOSED, fh, -10, 0.15),
            Key(0.62, (0.35, -0.05, 1.82), CLOSED, fh, 36, 0.04)), 0.52, 0.65, False, 1.3, 0.35),
        "Offensive Forehand Flip": _rally((
            Key(0.3, (0.70, -0.30, 0.84), OPEN, (0.55, -0.35, -0.75), -10, root=(0.3, 0.0), **lean_in),
            Key(0.52, (0.86, -0.24, 0.96), FLAT, (0.7, -0.4, 0.1), 0, root=(0.3, 0.0), **lean_in),
            Key(0.64, (0.95, -0.12, 1.22), CLOSED, (0.3, -0.3, 0.9), 10, root=(0.3, 0.0), **lean_in)),
            0.52, 0.55, False, 1.1, 0.15),
        "Offensive Backhand Hit": _rally((
            Key(0.38, (0.22, 0.26, 1.02), FLAT, bh, 28, 0.12),
            Key(0.52, (0.46, -0.05, 1.08), FLAT, bh, 5, 0.1),
            Key(0.66, (0.56, -0.38, 1.25), FLAT, bh, -22, 0.08)), 0.52, 0.6, True, 1.5, 0.12),
        "Offensive Backhand Loop": _rally((
            Key(0.36, (0.10, 0.32, 0.54), CLOSED, bh, 40, 0.3),
            Key(0.52, (0.38, -0.05, 1.00), CLOSED, bh, 8, 0.15),
            Key(0.62, (0.45, -0.42, 1.78), CLOSED, bh, -32, 0.04)), 0.52, 0.65, True, 1.3, 0.35),
        "Offensive Backhand Flip": _rally((
            Key(0.3, (0.68, 0.10, 0.84), OPEN, (0.3, 0.8, -0.5), 15, root=(0.3, 0.0), **lean_in),
            Key(0.52, (0.84, -0.02, 0.96), FLAT, (0.6, 0.4, 0.4), 5, root=(0.3, 0.0), **lean_in),
            Key(0.64, (0.95, -0.22, 1.22), CLOSED, (0.4, -0.6, 0.7), -10, root=(0.3, 0.0), **lean_in)),
            0.52, 0.55, True, 1.1, 0.15),
        "Defensive Forehand Push": _rally((
            Key(0.36, (0.48, -0.36, 1.02), OPEN, fh, -12, root=(0.25, 0.0), **lean_in),
            Key(0.56, (0.76, -0.30, 0.88), OPEN, fh, -4, root=(0.25, 0.0), **lean_in),
            Key(0.72, (0.92, -0.24, 0.78), OPEN, fh, 0, root=(0.25, 0.0), **lean_in)), 0.56, 0.65, False, 0.7, 0.08),
        "Defensive Forehand Block": _rally((
            Key(0.3, (0.40, -0.46, 1.16), (0.9, 0.0, -0.3), fh, -22, 0.14),
            Key(0.46, (0.62, -0.40, 1.20), (0.9, 0.0, -0.3), fh, -8, 0.14),
            Key(0.7, (0.60, -0.40, 1.18), (0.9, 0.0, -0.3), fh, -8, 0.14)), 0.46, 0.55, False, 1.2, 0.1),
        "Defensive Forehand Backspin": _rally((
            Key(0.22, root=(-0.55, 0.0)),
            Key(0.4, (0.0, -0.42, 1.65), (0.2, 0.0, 1.0), fh, -38, 0.1, root=(-0.55, 0.0)),
            Key(0.6, (0.42, -0.45, 0.85), OPEN, fh, -10, 0.2, root=(-0.55, 0.0)),
            Key(0.76, (0.56, -0.30, 0.55), OPEN, fh, 8, 0.28, 30, root=(-0.55, 0.0))), 0.6, 0.9, False, 0.9, 0.35),
        "Defensive Backhand Push": _rally((
            Key(0.36, (0.48, 0.04, 1.02), OPEN, bh, 12, root=(0.25, 0.0), **lean_in),
            Key(0.56, (0.76, -0.04, 0.88), OPEN, bh, 4, root=(0.25, 0.0), **lean_in),
            Key(0.72, (0.92, -0.08, 0.78), OPEN, bh, 0, root=(0.25, 0.0), **lean_in)), 0.56, 0.65, True, 0.7, 0.08),
        "Defensive Backhand Block": _rally((
            Key(0.3, (0.40, 0.08, 1.16), (0.9, 0.0, -0.3), bh, 20, 0.14),
            Key(0.46, (0.62, 0.0, 1.20), (0.9, 0.0, -0.3), bh, 6, 0.14),
            Key(0.7, (0.60, 0.0, 1.18), (0.9, 0.0, -0.3), bh, 6, 0.14)), 0.46, 0.55, True, 1.2, 0.1),
        "Defensive Backhand Backspin": _rally((
            Key(0.22, root=(-0.55, 0.0)),
            Key(0.4, (0.12, 0.36, 1.60), (0.2, 0.0, 1.0), bh, 35, 0.1, root=(-0.55, 0.0)),
            Key(0.6, (0.42, 0.0, 0.85), OPEN, bh, 5, 0.2, root=(-0.55, 0.0)),
            Key(0.76, (0.52, -0.22, 0.55), OPEN, bh, -10, 0.28, 30, root=(-0.55, 0.0))), 0.6, 0.9, True, 0.9, 0.35),
    }


NEGATIVE_KINDS = ("wait", "walk", "pickup", "ball_pass", "footwork")


def _negative(kind: str, rng: np.random.Generator, base_y: float) -> Program:
    if kind == "wait":
        return Program((Key(0.0), Key(0.5, (0.42, -0.26, 1.04), twist=5.0), Key(1.0)), 0.8, BallPlan("none"),
                       bounce=0.035)
    if kind == "walk":
        direction = -np.sign(base_y) if abs(base_y) > 0.3 else rng.choice([-1.0, 1.0])
        to = (0.0, float(direction * rng.uniform(0.6, 1.0)))
        low = (0.30, -0.32, 0.86)
        return Program((Key(0.0), Key(0.15, low, lean=8.0), Key(0.85, low, lean=8.0, root=to), Key(1.0, root=to)),
                       0.9, BallPlan("none"), stance=float(direction * 25.0), steps=4)
    if kind == "pickup":
        down = dict(knee=0.32, lean=62.0, twist=10.0)
        return Program((Key(0.0), Key(0.4, (0.35, -0.3, 0.5), free=(0.5, 0.28, 0.06), **down),
                        Key(0.55, (0.35, -0.3, 0.5), free=(0.5, 0.28, 0.06), **down), Key(0.95)), 0.9,
                       BallPlan("pickup", contact=0.48))
    if kind == "ball_pass":
        return Program((Key(0.0), Key(0.5, (0.42, -0.34, 0.98), twist=-8.0), Key(1.0)), 0.7,
                       BallPlan("pass", contact=0.55))
    if kind == "footwork":
        a, b = float(rng.uniform(-0.45, -0.25)), float(rng.uniform(0.2, 0.4))
        return Program((Key(0.0), Key(0.3, (0.35, -0.36, 1.0), twist=-15.0, knee=0.16, root=(0.0, a)),
                        Key(0.65, (0.42, -0.2, 1.02), twist=10.0, knee=0.16, root=(0.0, b)), Key(1.0)), 0.85,
                       BallPlan("none"), steps=4)
    raise ValueError(f"unknown negative kind {kind!r}; allowed: {', '.join(NEGATIVE_KINDS)}")


_STROKES = _strokes()
assert set(_STROKES) == set(TTSTROKE21_CLASSES[:-1])


def program_for(name: str, rng: np.random.Generator, base_y: float = 0.0) -> Program:
    """The program of a class; a negative draws one of :data:`NEGATIVE_KINDS`."""
    if name == NEGATIVE:
        return _negative(str(rng.choice(NEGATIVE_KINDS)), rng, base_y)
    try:
        return _STROKES[name]
    except KeyError:
        raise ValueError(f"unknown class {name!r}; allowed: {', '.join(TTSTROKE21_CLASSES)}") from None


@dataclass
class Segment:
    """One program placed in time: frames [start, start + idle_before + stroke + idle_after)."""

    name: str
    program: Program
    start: int
    idle_before: int
    stroke: int
    idle_after: int
    amplitude: float
    base: tuple[float, float] = (0.0, 0.0)
    wobble: np.ndarray = field(default_factory=lambda: np.zeros(4))

    @property
    def stroke_begin(self) -> int:
        return self.start + self.idle_before

    @property
    def stroke_end(self) -> int:
        return self.stroke_begin + self.stroke

    @property
    def end(self) -> int:
        return self.stroke_end + self.idle_after

    def phase(self, frames: np.ndarray) -> np.ndarray:
        return np.clip((frames - self.stroke_begin + 0.5) / self.stroke, 0.0, 1.0)


def _interp(phases: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    if len(phases) == 1:
        return np.repeat(values[:1], len(at), axis=0)
    return PchipInterpolator(phases, values, axis=0)(at)


def _feet(root_at, phase: np.ndarray, steps: int, width: float) -> np.ndarray:
    """Feet relative to the body: when it moves, each foot in turn steps to where it is going, lifted meanwhile."""
    feet = np.zeros((len(phase), 2, 3))
    feet[:, 0, 1], feet[:, 1, 1] = -width / 2, width / 2
    if steps == 0:
        return feet
    for foot in range(2):
        slot = np.clip(phase * steps - foot * 0.5, 0, steps)
        whole, frac = np.floor(slot), slot - np.floor(slot)
        done = np.minimum((whole + np.clip(frac * 2, 0, 1)) / steps, 1.0)
        feet[:, foot, :2] += root_at(done) - root_at(phase)
        feet[:, foot, 2] = np.where((frac < 0.5) & (slot > 0) & (slot < steps), 0.06 * np.sin(np.pi * frac * 2), 0)
    return feet


def build_pose(segments: list[Segment], total: int, fps: float, stance_jitter: float, feet_width: float) -> Pose:
    """The pose of every frame of a video made of consecutive segments."""
    frames = np.arange(total, dtype=np.float64)
    fields = {name: np.zeros((total, dim)) for name, dim in
              (("hand", 3), ("free", 3), ("face", 3), ("handle", 3), ("root", 2), ("twist", 1), ("knee", 1),
               ("lean", 1))}
    bounce, stance, feet = np.zeros(total), np.zeros(total), np.zeros((total, 2, 3))
    backhand = np.zeros(total, dtype=bool)
    for seg in segments:
        idx = np.arange(seg.start, min(seg.end, total))
        if len(idx) == 0:
            continue
        phase = seg.phase(frames[idx])
        keys = seg.program.keys
        ready_hand, ready_free = np.array(READY_HAND), np.array(READY_FREE)
        hand = np.array([k.hand for k in keys])
        hand = ready_hand + (hand - ready_hand) * seg.amplitude
        free = np.array([k.free if k.free is not None
                         else ready_free + [-0.35 * (k.hand[0] - READY_HAND[0]), 0.0, 0.3 * (k.hand[2] - READY_HAND[2])]
                         for k in keys])
        phases = np.array([k.phase for k in keys])
        values = {"hand": hand, "free": free, "face": np.array([k.face for k in keys]),
                  "handle": np.array([k.handle for k in keys]), "root": np.array([k.root for k in keys]) + seg.base,
                  "twist": np.array([[k.twist * seg.amplitude] for k in keys]),
                  "knee": np.array([[k.knee] for k in keys]), "lean": np.array([[k.lean] for k in keys])}
        for name, value in values.items():
            fields[name][idx] = _interp(phases, value, phase)
        t = frames[idx] / fps
        # Idle life: breathing, swaying and a small racket wobble, seeded per segment.
        w = seg.wobble
        fields["hand"][idx] += 0.015 * np.stack([np.sin(2.1 * t + w[0]), np.sin(1.7 * t + w[1]),
                                                 np.sin(2.6 * t + w[2])], axis=1)
        bounce[idx] = 0.008 * np.sin(3.0 * t + w[3])
        if seg.program.bounce:
            bounce[idx] += seg.program.bounce * np.abs(np.sin(np.pi * 2.5 * t + w[3]))
        stance[idx] = _interp(np.array([0.0, 0.15, 0.85, 1.0]), np.array([0, 1, 1, 0.0])[:, None],
                              phase)[:, 0] * seg.program.stance + stance_jitter
        feet[idx] = _feet(partial(_interp, phases, values["root"]), phase, seg.program.steps, feet_width)
        backhand[idx] = seg.program.backhand
    return Pose(root=fields["root"], bounce=bounce, knee=fields["knee"][:, 0], lean=fields["lean"][:, 0],
                twist=fields["twist"][:, 0], stance=stance, hand=fields["hand"], free=fields["free"],
                face=fields["face"], handle=fields["handle"], feet=feet, backhand=backhand)

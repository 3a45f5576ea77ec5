"""Everything drawn at random per clip so that no single frame or global statistic gives the class away.

Player position and distance to the table, body proportions, clothing, skin and racket colours,
handedness, wall and floor colours and textures, barriers and banners, lighting gain and gamma,
camera position, zoom and roll, camera shake, sensor noise, motion blur, stroke tempo and amplitude,
idle time around the stroke, and a distractor (a second player at the far end or a passer-by).
None of these draws depends on the class.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from tstcnn.synth.player import Body
from tstcnn.synth.scene import Lighting

__all__ = ["Nuisance", "sample_nuisance", "sample_body", "sample_timing"]


def _hsv(rng: np.random.Generator, hue: tuple[float, float] = (0, 1), sat: tuple[float, float] = (0.2, 0.9),
         val: tuple[float, float] = (0.2, 0.95)) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(*hue) % 1.0, rng.uniform(*sat), rng.uniform(*val))
    return (r * 255, g * 255, b * 255)


SKINS = ((241, 194, 160), (224, 172, 130), (198, 134, 96), (160, 100, 70), (110, 70, 50), (235, 205, 185))


@dataclass(frozen=True)
class Nuisance:
    """Per-clip draws that do not depend on the class."""

    light: Lighting
    style: dict
    camera_azimuth: float  # degrees from the player's forward direction towards the camera side
    camera_distance: float
    camera_height: float
    fill: float  # fraction of the frame height a 1.75 m player covers
    roll: float
    target: tuple[float, float, float]  # look-at point relative to the player's feet
    player_distance: float  # from the table's end line
    player_offset: float  # across the table
    stance_jitter: float
    feet_width: float
    shake: float  # pixels at 640 wide
    noise: float  # sensor noise standard deviation, grey levels
    blur: float  # weight of the previous frame in the motion blur
    distractor: str  # "none", "opponent" or "passer"
    ball_colour: tuple[int, int, int]


def sample_body(rng: np.random.Generator, light: Lighting, left_handed: bool) -> Body:
    height = rng.uniform(1.55, 1.95)
    k = height / 1.75
    red, black = light((rng.uniform(150, 230), rng.uniform(10, 40), rng.uniform(10, 50))), light(
        (rng.uniform(10, 45),) * 3)
    forehand, backhand = (red, black) if rng.random() < 0.5 else (black, red)
    return Body(
        height=height, shoulder_width=0.40 * k * rng.uniform(0.9, 1.12), hip_width=0.28 * k * rng.uniform(0.9, 1.1),
        arm_scale=rng.uniform(0.95, 1.05), left_handed=left_handed, shirt=light(_hsv(rng)),
        shorts=light(_hsv(rng, val=(0.1, 0.8))), skin=light(SKINS[rng.integers(len(SKINS))]),
        hair=light(_hsv(rng, hue=(0.02, 0.12), sat=(0.2, 0.8), val=(0.05, 0.6))),
        shoes=light(_hsv(rng, sat=(0.0, 0.5), val=(0.3, 1.0))), racket_forehand=forehand, racket_backhand=backhand,
        handle=light((rng.uniform(150, 210), rng.uniform(110, 160), rng.uniform(60, 100))))


def _style(rng: np.random.Generator, light: Lighting) -> dict:
    wall = _hsv(rng, sat=(0.05, 0.6), val=(0.25, 0.9))
    floor = _hsv(rng, hue=(0.0, 0.12), sat=(0.2, 0.8), val=(0.2, 0.75)) if rng.random() < 0.6 else _hsv(rng)
    table = _hsv(rng, hue=(0.5, 0.7), sat=(0.4, 0.9), val=(0.25, 0.6)) if rng.random() < 0.7 else _hsv(
        rng, hue=(0.3, 0.45), sat=(0.4, 0.9), val=(0.2, 0.5))
    dark = tuple(c * 0.55 for c in table)
    barrier = _hsv(rng, sat=(0.4, 0.9), val=(0.2, 0.6))
    return {
        "wall": light(wall), "wall_band_colour": light(_hsv(rng)),
        "wall_band": tuple(sorted(rng.uniform(0.3, 2.5, size=2))), "wall_distance": rng.uniform(7.0, 11.0),
        "floor": light(floor), "floor_line": light(tuple(c * 0.8 for c in floor)),
        "plank_spacing": rng.uniform(0.25, 0.8), "texture": rng.uniform(0.03, 0.12),
        "table": light(table), "table_side": light(dark), "table_leg": light((40, 40, 45)),
        "table_line": light((235, 235, 235)), "net": light((50, 50, 60)),
        "banners": [((rng.uniform(-6, 6), rng.uniform(0.5, 2.5)), (rng.uniform(0.3, 1.5), rng.uniform(0.3, 1.0)),
                     light(_hsv(rng))) for _ in range(rng.integers(0, 4))],
        "barriers": [(rng.uniform(-5, 3), rng.uniform(5.5, 6.8), rng.uniform(1.0, 4.0), light(barrier))
                     for _ in range(rng.integers(0, 4))],
    }


def sample_nuisance(rng: np.random.Generator, left_handed: float) -> tuple[Nuisance, Body]:
    """Draw the scene, camera, player and image nuisances of one clip (or one long video)."""
    light = Lighting(gain=rng.uniform(0.75, 1.2), gamma=rng.uniform(0.75, 1.35))
    body = sample_body(rng, light, bool(rng.random() < left_handed))
    distractor = str(rng.choice(["none", "opponent", "passer"], p=[0.7, 0.15, 0.15]))
    nuisance = Nuisance(
        light=light, style=_style(rng, light), camera_azimuth=rng.uniform(38.0, 60.0),
        camera_distance=rng.uniform(3.2, 5.0), camera_height=rng.uniform(1.0, 1.5), fill=rng.uniform(0.8, 0.95),
        roll=rng.normal(0.0, 1.2), target=(rng.uniform(0.1, 0.6), rng.uniform(-0.2, 0.2), rng.uniform(0.95, 1.2)),
        player_distance=rng.uniform(0.35, 1.1), player_offset=rng.uniform(-0.5, 0.5),
        stance_jitter=rng.normal(0.0, 8.0), feet_width=rng.uniform(0.45, 0.7),
        shake=rng.choice([0.0, rng.uniform(0.5, 2.5)], p=[0.5, 0.5]), noise=rng.uniform(1.0, 5.0),
        blur=rng.uniform(0.0, 0.25), distractor=distractor,
        ball_colour=light((250, 250, 245) if rng.random() < 0.7 else (250, 150, 40)))
    return nuisance, body


def sample_timing(rng: np.random.Generator, fps: float, duration: float) -> tuple[int, int, int, float]:
    """Frames of idle before, stroke and idle after (tempo ±30%), and the stroke amplitude (±20%)."""
    tempo = rng.uniform(0.7, 1.3)
    before, after = rng.uniform(0.08, 0.4), rng.uniform(0.08, 0.4)
    return (max(1, round(before * fps)), max(4, round(duration * tempo * fps)), max(1, round(after * fps)),
            float(rng.uniform(0.8, 1.2)))

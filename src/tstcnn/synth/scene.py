"""The static scene of a synthetic clip: camera, room (wall, floor, objects) and the table.

World coordinates are metres: ``x`` along the table towards the far side, ``y`` across it, ``z`` up;
the table is centred on the origin (2.74 m × 1.525 m, top at 0.76 m). The camera is a pinhole one
placed beside the table, near the player's end, as in the TTStroke-21 recordings. Everything static
is drawn once per clip into a background larger than the frame by a margin, so that camera shake is
a crop at a moving offset and costs nothing per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["TABLE_LENGTH", "TABLE_WIDTH", "TABLE_HEIGHT", "Camera", "look_at", "Lighting", "draw_background",
           "table_ops", "polygon_op", "segment_op", "draw_ops", "draw_polygon", "draw_segment"]

TABLE_LENGTH, TABLE_WIDTH, TABLE_HEIGHT = 2.74, 1.525, 0.76
NEAR = 0.1  # metres: geometry closer to the camera than this is clipped away
SHIFT = 2  # sub-pixel precision of the OpenCV drawing calls (quarter pixels)
_SCALE = 1 << SHIFT


@dataclass(frozen=True)
class Camera:
    """Pinhole camera; ``rotation`` rows are the image right, image down and viewing directions."""

    position: np.ndarray
    rotation: np.ndarray
    focal: float
    centre: tuple[float, float]

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=np.float64) - self.position) @ self.rotation.T

    def project_camera(self, cam: np.ndarray, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """Camera-space points (..., 3) to pixels (..., 2); depths below NEAR are clamped."""
        depth = np.maximum(cam[..., 2], NEAR)
        u = self.focal * cam[..., 0] / depth + self.centre[0] + offset[0]
        v = self.focal * cam[..., 1] / depth + self.centre[1] + offset[1]
        return np.stack([u, v], axis=-1)

    def project(self, points: np.ndarray, offset: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
        """World points (..., 3) to pixels (..., 2) and depths (...)."""
        cam = self.to_camera(points)
        return self.project_camera(cam, offset), cam[..., 2]

    def shifted(self, dx: float, dy: float) -> Camera:
        return Camera(self.position, self.rotation, self.focal, (self.centre[0] + dx, self.centre[1] + dy))


def look_at(position: np.ndarray, target: np.ndarray, focal: float, centre: tuple[float, float],
            roll_deg: float = 0.0) -> Camera:
    """A camera at ``position`` looking at ``target`` with ``z`` up, rolled by ``roll_deg``."""
    forward = target - position
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    a = np.deg2rad(roll_deg)
    right, down = np.cos(a) * right + np.sin(a) * down, -np.sin(a) * right + np.cos(a) * down
    return Camera(np.asarray(position, dtype=np.float64), np.stack([right, down, forward]), float(focal), centre)


@dataclass(frozen=True)
class Lighting:
    """Global gain and gamma, applied to every colour before drawing (so it costs nothing per frame)."""

    gain: float = 1.0
    gamma: float = 1.0

    def __call__(self, colour: tuple[float, float, float] | np.ndarray) -> tuple[int, int, int]:
        c = np.clip(np.asarray(colour, dtype=np.float64) / 255.0, 0, 1) ** self.gamma * self.gain
        r, g, b = (int(v) for v in np.clip(c * 255.0, 0, 255).round())
        return (r, g, b)

    def image(self, image: np.ndarray) -> np.ndarray:
        lut = np.clip((np.arange(256) / 255.0) ** self.gamma * self.gain * 255.0, 0, 255).round().astype(np.uint8)
        return cv2.LUT(image, lut)


def _clip_polygon(cam: np.ndarray) -> np.ndarray:
    """Sutherland–Hodgman clip of a camera-space polygon against the near plane."""
    out = []
    for i in range(len(cam)):
        a, b = cam[i], cam[(i + 1) % len(cam)]
        a_in, b_in = a[2] >= NEAR, b[2] >= NEAR
        if a_in:
            out.append(a)
        if a_in != b_in:
            out.append(a + (b - a) * (NEAR - a[2]) / (b[2] - a[2]))
    return np.array(out) if out else np.zeros((0, 3))


def _pixels(uv: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(uv) * _SCALE).astype(np.int32)


# A drawing operation with its pixels already projected: ("poly", points) or ("line", a, b, thickness).
DrawOp = tuple


def polygon_op(camera: Camera, points: np.ndarray, colour: tuple[int, int, int]) -> DrawOp | None:
    """A convex world-space polygon, clipped to what lies in front of the camera, projected once."""
    cam = _clip_polygon(camera.to_camera(points))
    if len(cam) < 3:
        return None
    return ("poly", _pixels(camera.project_camera(cam)), colour)


def segment_op(camera: Camera, a: np.ndarray, b: np.ndarray, colour: tuple[int, int, int], width_m: float
               ) -> DrawOp | None:
    """A world-space segment ``width_m`` metres thick (at its far end: a long line passing near the camera must
    not swell into a blob), clipped to the near plane."""
    ca, cb = camera.to_camera(np.stack([a, b]))
    if ca[2] < NEAR and cb[2] < NEAR:
        return None
    if ca[2] < NEAR:
        ca = ca + (cb - ca) * (NEAR - ca[2]) / (cb[2] - ca[2])
    elif cb[2] < NEAR:
        cb = cb + (ca - cb) * (NEAR - cb[2]) / (ca[2] - cb[2])
    pa, pb = _pixels(camera.project_camera(np.stack([ca, cb])))
    thickness = max(1, int(round(camera.focal * width_m / max(ca[2], cb[2]))))
    return ("line", pa, pb, colour, thickness)


def draw_ops(image: np.ndarray, ops: list[DrawOp | None], dx: int = 0, dy: int = 0) -> None:
    """Run projected drawing operations, shifted by whole pixels (camera shake)."""
    shift = np.array([dx, dy], dtype=np.int32) * _SCALE
    for op in ops:
        if op is None:
            continue
        if op[0] == "poly":
            cv2.fillConvexPoly(image, op[1] + shift, op[2], cv2.LINE_AA, SHIFT)
        else:
            a, b = op[1] + shift, op[2] + shift
            cv2.line(image, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), op[3], op[4], cv2.LINE_AA, SHIFT)


def draw_polygon(image: np.ndarray, camera: Camera, points: np.ndarray, colour: tuple[int, int, int]) -> None:
    draw_ops(image, [polygon_op(camera, points, colour)])


def draw_segment(image: np.ndarray, camera: Camera, a: np.ndarray, b: np.ndarray, colour: tuple[int, int, int],
                 width_m: float) -> None:
    draw_ops(image, [segment_op(camera, a, b, colour, width_m)])


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int], amount: float
                  ) -> np.ndarray:
    """Low-frequency multiplicative texture around 1 (blotches on walls and floors)."""
    coarse = rng.normal(0.0, amount, size=cells).astype(np.float32)
    return 1.0 + cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)[..., None]


def _horizontal(camera: Camera) -> np.ndarray:
    forward = camera.rotation[2].copy()
    forward[2] = 0.0
    return forward / np.linalg.norm(forward)


def draw_background(camera: Camera, size: tuple[int, int], style: dict, light: Lighting,
                    rng: np.random.Generator) -> np.ndarray:
    """Wall, floor, floor planks, barriers and banners, for a camera whose image is ``size`` = (w, h)."""
    width, height = size
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = style["floor"]
    forward = _horizontal(camera)
    side = np.array([-forward[1], forward[0], 0.0])
    ground = camera.position * np.array([1.0, 1.0, 0.0])
    wall_distance = style["wall_distance"]
    # Floor planks: lines along and across the viewing direction.
    spacing = style["plank_spacing"]
    for k in range(-20, 21):
        a = ground + side * k * spacing + forward * 0.3
        draw_segment(image, camera, a, a + forward * wall_distance, style["floor_line"], 0.004)
    # Wall: everything above the line where the wall meets the floor.
    base = ground + forward * wall_distance
    (u0, v0), (u1, v1) = camera.project(np.stack([base - side * 40, base + side * 40]))[0]
    slope = (v1 - v0) / (u1 - u0) if abs(u1 - u0) > 1e-6 else 0.0
    left, right = v0 + slope * (-10 - u0), v0 + slope * (width + 10 - u0)
    wall = np.array([[-10, left], [width + 10, right], [width + 10, -10], [-10, -10]])
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillConvexPoly(mask, _pixels(wall), 255, cv2.LINE_AA, SHIFT)
    wall_image = np.empty_like(image)
    wall_image[:] = style["wall"]
    band_low, band_high = style["wall_band"]
    draw_polygon(wall_image, camera, np.stack([base - side * 40 + [0, 0, band_low], base + side * 40 + [0, 0, band_low],
                                               base + side * 40 + [0, 0, band_high],
                                               base - side * 40 + [0, 0, band_high]]), style["wall_band_colour"])
    for centre, extent, colour in style["banners"]:
        c = base + side * centre[0] + np.array([0, 0, centre[1]]) - forward * 0.01
        w, h = extent
        draw_polygon(wall_image, camera, np.stack([c - side * w, c + side * w, c + side * w + [0, 0, h],
                                                   c - side * w + [0, 0, h]]), colour)
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    image = (image * (1 - alpha) + wall_image * alpha).astype(np.uint8)
    # Barriers: low panels standing on the floor between the player and the wall.
    for offset, distance, length, colour in style["barriers"]:
        a = ground + forward * distance + side * offset
        corners = np.stack([a, a + side * length, a + side * length + [0, 0, 0.7], a + [0, 0, 0.7]])
        draw_polygon(image, camera, corners, colour)
    texture = _smooth_noise(rng, (height, width), (6, 10), style["texture"])
    image = np.clip(image.astype(np.float32) * texture, 0, 255).astype(np.uint8)
    return light.image(image)


def table_ops(camera: Camera, style: dict) -> list[DrawOp | None]:
    """The table (legs, top slab, white lines, net), projected once for a whole clip."""
    hx, hy, z = TABLE_LENGTH / 2, TABLE_WIDTH / 2, TABLE_HEIGHT
    ops = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            foot = np.array([sx * (hx - 0.25), sy * (hy - 0.1), 0.0])
            ops.append(segment_op(camera, foot, foot + [0, 0, z], style["table_leg"], 0.04))
    top = np.array([[-hx, -hy, z], [hx, -hy, z], [hx, hy, z], [-hx, hy, z]])
    slab = top - [0, 0, 0.04]
    for i in range(4):  # the slab's edges, darker, drawn before the top
        ops.append(polygon_op(camera, np.stack([top[i], top[(i + 1) % 4], slab[(i + 1) % 4], slab[i]]),
                              style["table_side"]))
    ops.append(polygon_op(camera, top, style["table"]))
    line = style["table_line"]
    ops += [segment_op(camera, top[i], top[(i + 1) % 4], line, 0.02) for i in range(4)]
    ops.append(segment_op(camera, np.array([-hx, 0, z]), np.array([hx, 0, z]), line, 0.004))
    net = np.array([[0, -hy - 0.15, z], [0, hy + 0.15, z], [0, hy + 0.15, z + 0.1525], [0, -hy - 0.15, z + 0.1525]])
    ops.append(polygon_op(camera, net, style["net"]))
    ops.append(segment_op(camera, net[3], net[2], line, 0.01))
    return ops

"""An articulated player holding a racket: joint positions from a pose, and drawing.

A pose is given in the player's local frame (metres, ``x`` forward towards the table, ``y`` to the
player's left, ``z`` up, origin on the floor between the feet) for a right-handed player of 1.75 m;
:func:`pose_joints` scales it to the body, bends the knees and elbows by two-bone inverse
kinematics, mirrors it for a left-handed player and places it in the world. All arrays carry a
leading frame axis, so a whole clip is posed at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tstcnn.synth.scene import SHIFT, Camera

__all__ = ["Body", "Pose", "Joints", "pose_joints", "draw_player", "RIM_POINTS"]

REFERENCE_HEIGHT = 1.75
RIM_POINTS = 12


@dataclass(frozen=True)
class Body:
    """Proportions and colours of one player (colours are RGB, already lit)."""

    height: float
    shoulder_width: float
    hip_width: float
    arm_scale: float
    left_handed: bool
    shirt: tuple[int, int, int]
    shorts: tuple[int, int, int]
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    shoes: tuple[int, int, int]
    racket_forehand: tuple[int, int, int]
    racket_backhand: tuple[int, int, int]
    handle: tuple[int, int, int]
    racket_scale: float = 1.7  # rackets are drawn larger than life so they stay visible at low resolution


@dataclass
class Pose:
    """Per-frame pose of a right-handed reference player in the local frame (arrays of N frames)."""

    root: np.ndarray  # (N, 2) body centre on the floor
    bounce: np.ndarray  # (N,) vertical offset of the whole body
    knee: np.ndarray  # (N,) pelvis drop from bending the knees
    lean: np.ndarray  # (N,) forward lean of the spine, degrees
    twist: np.ndarray  # (N,) shoulder yaw relative to the feet, degrees (pelvis turns 40% of it)
    stance: np.ndarray  # (N,) yaw of the whole body, degrees
    hand: np.ndarray  # (N, 3) racket wrist, relative to root
    free: np.ndarray  # (N, 3) free wrist, relative to root
    face: np.ndarray  # (N, 3) normal of the racket's hitting face
    handle: np.ndarray  # (N, 3) direction from the wrist to the racket head
    feet: np.ndarray  # (N, 2, 3) right and left foot, relative to root
    backhand: np.ndarray  # (N,) bool: the hitting face is the backhand rubber


@dataclass
class Joints:
    """World positions (N, J, 3) of the skeleton, the racket, and the racket face normal (N, 3)."""

    points: np.ndarray
    face: np.ndarray
    backhand: np.ndarray


# Joint indices into Joints.points.
PELVIS, NECK, HEAD = 0, 1, 2
R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST = 3, 4, 5, 6, 7, 8
R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE, L_ANKLE, R_TOE, L_TOE = 9, 10, 11, 12, 13, 14, 15, 16
RACKET_NECK, RACKET_CENTRE, NOSE, RIM = 17, 18, 19, 20


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _yaw(v: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    a = np.deg2rad(degrees)[..., None]
    c, s = np.cos(a), np.sin(a)
    return np.concatenate([c * v[..., :1] - s * v[..., 1:2], s * v[..., :1] + c * v[..., 1:2], v[..., 2:]], axis=-1)


def _two_bone(root: np.ndarray, target: np.ndarray, upper: float, lower: float, pole: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """Middle joint (elbow, knee) and reachable end for a two-segment limb, bending towards ``pole``."""
    v = target - root
    dist = np.clip(np.linalg.norm(v, axis=-1, keepdims=True), abs(upper - lower) + 1e-3, (upper + lower) * 0.999)
    u = _unit(v)
    cos_a = (upper ** 2 + dist ** 2 - lower ** 2) / (2 * upper * dist)
    p = _unit(pole - np.sum(pole * u, axis=-1, keepdims=True) * u)
    middle = root + u * upper * cos_a + p * upper * np.sqrt(np.clip(1 - cos_a ** 2, 0, 1))
    return middle, root + u * dist


def pose_joints(pose: Pose, body: Body, position: tuple[float, float], facing_deg: float) -> Joints:
    """Joint and racket positions in the world for a body standing at ``position`` facing ``facing_deg``."""
    k = body.height / REFERENCE_HEIGHT
    n = len(pose.knee)
    leg, torso, upper_arm, forearm = 0.50 * k, 0.50 * k, 0.30 * k * body.arm_scale, 0.27 * k * body.arm_scale
    thigh, shin = 0.255 * k, 0.245 * k
    z_up = np.array([0.0, 0.0, 1.0])
    pelvis = np.zeros((n, 3))
    pelvis[:, 2] = leg * 0.98 - pose.knee * k + pose.bounce
    lean = np.deg2rad(pose.lean)[:, None]
    spine = _yaw(np.concatenate([np.sin(lean), np.zeros((n, 1)), np.cos(lean)], axis=1), pose.twist * 0.5)
    neck = pelvis + spine * torso
    head = neck + _unit(spine + 0.3 * z_up) * 0.17 * k
    nose = head + _yaw(np.tile([0.05 * k, 0.0, 0.0], (n, 1)), pose.twist)
    across = _yaw(np.tile([0.0, 1.0, 0.0], (n, 1)), pose.twist)
    hips_across = _yaw(np.tile([0.0, 1.0, 0.0], (n, 1)), pose.twist * 0.4)
    r_shoulder = neck - across * body.shoulder_width / 2 - z_up * 0.03 * k
    l_shoulder = neck + across * body.shoulder_width / 2 - z_up * 0.03 * k
    r_hip, l_hip = pelvis - hips_across * body.hip_width / 2, pelvis + hips_across * body.hip_width / 2
    # The racket elbow hangs down and out for forehands, points forwards and out for backhands.
    elbow_pole = np.where(pose.backhand[:, None], [0.7, -0.8, -0.3], [-0.3, -1.0, -1.2])
    r_elbow, r_wrist = _two_bone(r_shoulder, pose.hand * k, upper_arm, forearm, elbow_pole)
    l_elbow, l_wrist = _two_bone(l_shoulder, pose.free * k, upper_arm, forearm, np.array([-0.3, 1.0, -1.2]))
    r_ankle_target = pose.feet[:, 0] * k + [0, 0, 0.07]
    l_ankle_target = pose.feet[:, 1] * k + [0, 0, 0.07]
    knee_pole = np.array([1.0, 0.0, 0.2])
    r_knee, r_ankle = _two_bone(r_hip, r_ankle_target, thigh, shin, knee_pole - [0, 0.3, 0])
    l_knee, l_ankle = _two_bone(l_hip, l_ankle_target, thigh, shin, knee_pole + [0, 0.3, 0])
    foot_dir = _yaw(np.tile([0.14 * k, 0.0, -0.05], (n, 1)), pose.twist * 0.2)
    r_toe, l_toe = r_ankle + foot_dir, l_ankle + foot_dir
    # Racket: the handle leaves the wrist along `handle`, the face lies in the plane orthogonal to `face`.
    face = _unit(pose.face)
    along = _unit(pose.handle - np.sum(pose.handle * face, axis=-1, keepdims=True) * face)
    side = np.cross(face, along)
    radius = 0.08 * body.racket_scale * k
    racket_neck = r_wrist + along * 0.1 * k
    centre = racket_neck + along * radius
    angles = np.linspace(0, 2 * np.pi, RIM_POINTS, endpoint=False)
    rim = (centre[:, None] + radius * (np.cos(angles)[None, :, None] * along[:, None] * 1.05
                                        + np.sin(angles)[None, :, None] * side[:, None]))
    points = np.concatenate([np.stack([pelvis, neck, head, r_shoulder, r_elbow, r_wrist, l_shoulder, l_elbow, l_wrist,
                                       r_hip, r_knee, r_ankle, l_hip, l_knee, l_ankle, r_toe, l_toe, racket_neck,
                                       centre, nose], axis=1), rim], axis=1)
    points[..., :2] += pose.root[:, None, :]
    if body.left_handed:  # a left-handed player is the mirror image of a right-handed one
        points[..., 1] *= -1
        face = face * [1, -1, 1]
    yaw = pose.stance + facing_deg
    points = _yaw(points, np.broadcast_to(yaw[:, None], points.shape[:2]))
    face = _yaw(face, yaw)
    points[..., :2] += position
    return Joints(points, face, pose.backhand)


def _line(image: np.ndarray, a: np.ndarray, b: np.ndarray, colour: tuple[int, int, int], thickness: int) -> None:
    cv2.line(image, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), colour, max(1, thickness), cv2.LINE_AA, SHIFT)


def draw_player(image: np.ndarray, camera: Camera, joints: Joints, frame: int, body: Body,
                offset: tuple[float, float]) -> None:
    """Draw one frame of a player, parts sorted far to near (painter's algorithm)."""
    world = joints.points[frame]
    cam = camera.to_camera(world)
    depth = np.maximum(cam[:, 2], 0.1)
    px = np.round(camera.project_camera(cam, offset) * (1 << SHIFT)).astype(np.int32)
    scale = camera.focal * body.height / REFERENCE_HEIGHT / float(np.median(depth))  # pixels per metre

    def width(metres: float) -> int:
        return int(round(metres * scale))

    def leg(hip: int, knee: int, ankle: int, toe: int) -> None:
        mid_thigh = (px[hip] + px[knee]) // 2
        _line(image, px[knee], px[ankle], body.skin, width(0.10))
        _line(image, px[hip], px[knee], body.skin, width(0.13))
        _line(image, px[hip], mid_thigh, body.shorts, width(0.16))
        _line(image, px[ankle], px[toe], body.shoes, width(0.09))

    def torso() -> None:
        cv2.fillConvexPoly(image, px[[R_SHOULDER, L_SHOULDER, L_HIP, R_HIP]], body.shirt, cv2.LINE_AA, SHIFT)
        _line(image, px[PELVIS], px[NECK], body.shirt, width(0.24))
        cv2.fillConvexPoly(image, np.stack([px[R_HIP], px[L_HIP], px[L_HIP] + (px[PELVIS] - px[NECK]) // 5,
                                            px[R_HIP] + (px[PELVIS] - px[NECK]) // 5]),
                           body.shorts, cv2.LINE_AA, SHIFT)
        _line(image, px[R_HIP], px[L_HIP], body.shorts, width(0.16))

    def arm(shoulder: int, elbow: int, wrist: int) -> None:
        _line(image, px[elbow], px[wrist], body.skin, width(0.075))
        _line(image, px[shoulder], px[elbow], body.skin, width(0.09))
        _line(image, px[shoulder], (px[shoulder] + px[elbow]) // 2, body.shirt, width(0.12))

    def head() -> None:
        radius = int(round(0.11 * scale * (1 << SHIFT)))
        hair, face = px[HEAD] - (px[NOSE] - px[HEAD]) // 2, px[NOSE]
        cv2.circle(image, (int(hair[0]), int(hair[1])), max(radius, 1 << SHIFT), body.hair, -1, cv2.LINE_AA, SHIFT)
        cv2.circle(image, (int(face[0]), int(face[1])), max(int(radius * 0.85), 1 << SHIFT), body.skin, -1,
                   cv2.LINE_AA, SHIFT)

    def racket() -> None:
        to_camera = camera.position - world[RACKET_CENTRE]
        facing = float(np.dot(joints.face[frame], to_camera)) > 0
        hitting, other = ((body.racket_backhand, body.racket_forehand) if joints.backhand[frame]
                          else (body.racket_forehand, body.racket_backhand))
        _line(image, px[R_WRIST], px[RACKET_NECK], body.handle, width(0.035))
        cv2.fillConvexPoly(image, px[RIM:RIM + RIM_POINTS], hitting if facing else other, cv2.LINE_AA, SHIFT)

    def racket_arm() -> None:
        arm(R_SHOULDER, R_ELBOW, R_WRIST)
        racket()

    parts = [
        (depth[[R_HIP, R_KNEE, R_ANKLE]].mean(), lambda: leg(R_HIP, R_KNEE, R_ANKLE, R_TOE)),
        (depth[[L_HIP, L_KNEE, L_ANKLE]].mean(), lambda: leg(L_HIP, L_KNEE, L_ANKLE, L_TOE)),
        (depth[[PELVIS, NECK]].mean(), torso),
        (depth[[L_SHOULDER, L_ELBOW, L_WRIST]].mean(), lambda: arm(L_SHOULDER, L_ELBOW, L_WRIST)),
        (min(depth[[R_SHOULDER, R_ELBOW, R_WRIST]].mean(), depth[RACKET_CENTRE]), racket_arm),
        (depth[HEAD] - 0.05, head),
    ]
    for _, draw in sorted(parts, key=lambda part: -part[0]):
        draw()

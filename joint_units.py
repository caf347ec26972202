"""Joint units: the simulator's radians <-> the units of datasets and GR00T checkpoints.

Per joint, from sim radians q with the SO-101's MuJoCo joint range [lo, hi]:

    radians   q (the simulator's own unit)
    degrees   arm joints q * 180 / pi; gripper 100 * (q - lo) / (hi - lo)     (LeRobot use_degrees=True)
    range     arm joints 200 * (q - lo) / (hi - lo) - 100; gripper as above  (LeRobot's older default)

LeRobot keeps the gripper in [0, 100] in both of its modes (so101_follower's RANGE_0_100 whatever
use_degrees says). The mapping assumes the model's zero and joint range match the real arm's
calibration (zero at mid-range, as in so101_new_calib). Values that do not name their units tell them
apart by the gripper tip positions recorded with them (`units_from_tip`), else by their extent
(`units_from_extent`).
"""

from __future__ import annotations

import functools
import math

import so101_env  # noqa: I001  first: it picks the headless OpenGL backend before mujoco loads

import mujoco
import numpy as np

from so101_env import JOINT_NAMES

JOINT_UNITS = ("radians", "degrees", "range")
TIP_TOLERANCE = 1e-3
"""metres: how far from a recorded gripper tip the joints may put it in their own units (the simulated arm's float32
values: within 1e-7 m); read in the other LeRobot unit they put it 1-2 cm away on the expert's demonstrations (a
"range" unit, the joint's span / 200, is 0.95-1.57 degrees; 1.0 for shoulder_lift alone)"""


@functools.cache
def _model() -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_path(str(so101_env.XML_PATH))


@functools.cache
def joint_ranges() -> tuple[np.ndarray, np.ndarray]:
    """(low, high) MuJoCo joint ranges in radians, in JOINT_NAMES order."""
    model = _model()
    ranges = np.array([model.jnt_range[model.joint(name).id] for name in JOINT_NAMES])
    return ranges[:, 0], ranges[:, 1]


def radians_to_units(q: np.ndarray, units: str) -> np.ndarray:
    """Sim joint radians (..., 6) to `units`."""
    if units == "radians":
        return q.copy()
    low, high = joint_ranges()
    fraction = (q - low) / (high - low)
    out = 200.0 * fraction - 100.0 if units == "range" else np.degrees(q)
    out[..., 5] = 100.0 * fraction[..., 5]
    return out


def units_to_radians(values: np.ndarray, units: str) -> np.ndarray:
    """Inverse of `radians_to_units`."""
    if units == "radians":
        return values.copy()
    low, high = joint_ranges()
    if units == "range":
        out = low + (values + 100.0) / 200.0 * (high - low)
    else:
        out = np.radians(values)
    out[..., 5] = low[5] + values[..., 5] / 100.0 * (high[5] - low[5])
    return out


def check_units(units: str) -> None:
    if units not in JOINT_UNITS:
        raise ValueError(f"unknown joint units {units!r}; choose one of {', '.join(JOINT_UNITS)}")


def units_from_extent(extent: np.ndarray) -> str | None:
    """Joint units from the largest |value| per joint (6, JOINT_NAMES order), or None if unclear.

    Radians when no joint leaves [-2 pi, 2 pi] (no joint turns further); degrees when an arm joint
    passes 100 (LeRobot's normalized range cannot); otherwise degrees and LeRobot's range both fit.
    """
    if extent.max() <= 2 * math.pi:
        return "radians"
    if extent[:5].max() > 100:
        return "degrees"
    return None


def units_from_tip(joints: np.ndarray, tips: np.ndarray, max_frames: int = 200) -> str | None:
    """Joint units from joint values (N, 6) and the gripper tip positions recorded with them (N, 3, metres, the
    task state's tip.x/y/z): the one unit of JOINT_UNITS in which the model's forward kinematics put the tip (the
    `gripperframe` site) within TIP_TOLERANCE of every recorded one, or None when no unit or several do (an arm
    that never left the pose where they agree). Up to `max_frames` frames, evenly spread, are checked."""
    model = _model()
    data = mujoco.MjData(model)
    addresses = [model.jnt_qposadr[model.joint(name).id] for name in JOINT_NAMES]
    site = model.site("gripperframe").id
    frames = np.unique(np.linspace(0, len(joints) - 1, min(len(joints), max_frames)).round().astype(int))

    def fits(units: str) -> bool:
        for q, tip in zip(units_to_radians(joints[frames], units), tips[frames]):
            data.qpos[addresses] = q
            mujoco.mj_kinematics(model, data)
            if not np.linalg.norm(data.site_xpos[site] - tip) <= TIP_TOLERANCE:
                return False
        return True

    fitting = [units for units in JOINT_UNITS if fits(units)]
    return fitting[0] if len(fitting) == 1 else None


def groot_joint_units(low: np.ndarray, high: np.ndarray) -> str:
    """Joint units of a GR00T checkpoint from its (6,) per-joint statistics in JOINT_NAMES order
    (min and max over its state and action keys): one of JOINT_UNITS.

    The rule of `units_from_extent` (phosphobot records radians), and "range" (LeRobot's [-100, 100]
    arm / [0, 100] gripper, its default before 2026) where it cannot tell: degrees within +-100
    look like "range", so pass `units` to the groot base to override."""
    return units_from_extent(np.maximum(np.abs(low), np.abs(high))) or "range"

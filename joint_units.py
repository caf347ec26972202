"""Joint units: the simulator's radians <-> the units of datasets and GR00T checkpoints.

Per joint, from sim radians q with the SO-101's MuJoCo joint range [lo, hi]:

    radians   q (the simulator's own unit)
    degrees   arm joints q * 180 / pi; gripper 100 * (q - lo) / (hi - lo)     (LeRobot use_degrees=True)
    range     arm joints 200 * (q - lo) / (hi - lo) - 100; gripper as above  (LeRobot's older default)

LeRobot keeps the gripper in [0, 100] in both of its modes. The mapping assumes the model's zero
and joint range match the real arm's calibration (zero at mid-range, as in so101_new_calib).
Values that do not name their units tell them apart by their extent (`units_from_extent`).
"""

from __future__ import annotations

import functools
import math

import so101_env  # noqa: I001  first: it picks the headless OpenGL backend before mujoco loads

import mujoco
import numpy as np

from so101_env import JOINT_NAMES

JOINT_UNITS = ("radians", "degrees", "range")


@functools.cache
def joint_ranges() -> tuple[np.ndarray, np.ndarray]:
    """(low, high) MuJoCo joint ranges in radians, in JOINT_NAMES order."""
    model = mujoco.MjModel.from_xml_path(str(so101_env.XML_PATH))
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


def groot_joint_units(low: np.ndarray, high: np.ndarray) -> str:
    """Joint units of a GR00T checkpoint from its (6,) per-joint statistics in JOINT_NAMES order
    (min and max over its state and action keys): one of JOINT_UNITS.

    The rule of `units_from_extent` (phosphobot records radians), and "range" (LeRobot's [-100, 100]
    arm / [0, 100] gripper, its default before 2026) where it cannot tell: degrees within +-100
    look like "range", so pass `units` to the groot base to override."""
    return units_from_extent(np.maximum(np.abs(low), np.abs(high))) or "range"

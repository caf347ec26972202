"""The simulated SO-101 as LeRobot sees a robot: flat dicts of joint positions in LeRobot's SO-101 units
("shoulder_pan.pos", ..., "gripper.pos") and camera images ("top_view", "wrist"), and joint-position goals sent
to its servos, clipped by its safety limits.

    arm = SimulatedArm(seed=0)
    arm.connect()
    observation = arm.get_observation()          # {"shoulder_pan.pos": 0.0, ..., "top_view": (224, 224, 3) uint8, ...}
    sent = arm.send_action({"shoulder_pan.pos": 5.0, ...})   # one policy period (1/30 s) of simulation

Units are LeRobot's SO-101 follower's (joint_units.py): degrees for the arm joints and 0-100 for the gripper
(`use_degrees=True`, its default), or its older [-100, 100] range. The scene is the task's: when an episode of
the task ends (the paper in the square, or `episode_steps` steps), the scene starts the next seeded episode,
as a person resets the table between episodes of a real recording; `finished_episodes` keeps the outcomes.

No LeRobot import here: the LeRobot robot plugin (plugins/lerobot_robot_so101_mujoco) is a thin adapter over
this class, and deploy.py's tests drive it without LeRobot installed.
"""

from __future__ import annotations

import math

import numpy as np

from joint_units import joint_ranges, radians_to_units, units_to_radians
from so101_env import CAMERA_NAMES, JOINT_NAMES, SO101PaperSquareEnv

JOINT_KEYS = tuple(f"{joint}.pos" for joint in JOINT_NAMES)
"""LeRobot's SO-101 motor names with its ".pos" suffix, in joint order"""
SERVO_STEP = 0.2
"""radians: the most a simulated servo's target moves in one policy period (the env's largest act_scale); the
real STS3215 turns about 0.16 rad in 1/30 s unloaded, so the simulated arm is about as fast as the real one"""


def lerobot_units(use_degrees: bool) -> str:
    """The joint_units name of LeRobot's SO-101 units for its `use_degrees` setting."""
    return "degrees" if use_degrees else "range"


def joints_to_dict(q: np.ndarray, units: str) -> dict[str, float]:
    """Sim joint radians (6,) -> {"shoulder_pan.pos": value, ...} in `units`."""
    return dict(zip(JOINT_KEYS, radians_to_units(np.asarray(q, dtype=np.float64), units).tolist()))


def joints_from_dict(values: dict, units: str) -> np.ndarray:
    """{"shoulder_pan.pos": value, ...} in `units` -> sim joint radians (6,); other keys are ignored. ValueError
    when a joint is missing or not a finite number (a value may be a Python, numpy or 0-d torch number)."""
    missing = [key for key in JOINT_KEYS if key not in values]
    if missing:
        raise ValueError(f"the joint positions lack {missing}; an SO-101 action names all of {list(JOINT_KEYS)}")
    joints = np.array([float(values[key]) for key in JOINT_KEYS])
    if not np.isfinite(joints).all():
        raise ValueError(f"joint positions must be finite numbers, got {dict(zip(JOINT_KEYS, joints.tolist()))}")
    return units_to_radians(joints, units)


def joint_distance_radians(distance: float, units: str) -> np.ndarray:
    """A joint distance in `units` (a per-step limit such as LeRobot's `max_relative_target`) as radians per joint
    (6,): in degrees and range units the gripper's unit is a percent of its range."""
    return np.abs(units_to_radians(np.full(6, float(distance)), units) - units_to_radians(np.zeros(6), units))


def limit_targets(targets: np.ndarray, present: np.ndarray, low: np.ndarray, high: np.ndarray,
                  max_step: float | np.ndarray | None) -> np.ndarray:
    """Joint goals (radians) within [low, high] and, with `max_step`, at most that far from the present positions
    (as LeRobot's `max_relative_target`): the safety limits of the arm and of deploy.py."""
    targets = np.minimum(np.maximum(targets, low), high)
    if max_step is not None:
        targets = np.minimum(np.maximum(targets, present - max_step), present + max_step)
    return targets


class SimulatedArm:
    """SO101PaperSquareEnv as a LeRobot-style robot. Each `send_action` runs one policy period (1/30 s) of
    physics: the servos move toward the goal at most SERVO_STEP radians per period."""

    name = "so101_mujoco"
    simulated = True
    """the arm's time is the simulation's: each action is one policy period, however long it takes to compute"""
    is_calibrated = True
    """the model's joint zero is the middle of its range, where LeRobot's SO-101 calibration puts it"""

    def __init__(self, use_degrees: bool = True, cameras: tuple[str, ...] = CAMERA_NAMES, image_size: int = 224,
                 seed: int = 0, episode_steps: int = 400, max_relative_target: float | None = None,
                 tape_half_size: float = 0.08):
        unknown = sorted(set(cameras) - set(CAMERA_NAMES))
        if unknown:
            raise ValueError(f"the simulated arm has the cameras {list(CAMERA_NAMES)}, not {unknown}")
        if max_relative_target is not None and not 0 < max_relative_target < math.inf:
            raise ValueError(f"max_relative_target must be a positive number (in the arm's units), got {max_relative_target}")
        self.units = lerobot_units(use_degrees)
        self.camera_names = tuple(cameras)
        self.image_size = image_size
        self.seed = seed
        self.max_step = None if max_relative_target is None else joint_distance_radians(max_relative_target, self.units)
        """max_relative_target as radians per joint"""
        self.env_options = dict(image_size=image_size, max_episode_steps=episode_steps, tape_half_size=tape_half_size,
                                act_scale=SERVO_STEP)
        SO101PaperSquareEnv(**self.env_options).close()  # refuse bad options now, not at connect()
        self.env: SO101PaperSquareEnv | None = None
        self.episode = 0
        """index of the task episode in progress; its scene was reset with seed `seed + episode`"""
        self.finished_episodes: list[dict] = []
        """per finished episode: its reset seed, success, steps and final paper-to-goal distance (metres)"""
        self._steps = 0
        self._state: np.ndarray | None = None

    # ------------------------------------------------------------------ what it observes and takes
    @property
    def observation_features(self) -> dict:
        cameras = {name: (self.image_size, self.image_size, 3) for name in self.camera_names}
        return {**dict.fromkeys(JOINT_KEYS, float), **cameras}

    @property
    def action_features(self) -> dict:
        return dict.fromkeys(JOINT_KEYS, float)

    # ------------------------------------------------------------------ connection
    @property
    def is_connected(self) -> bool:
        return self.env is not None

    def connect(self, calibrate: bool = True) -> None:
        """Start the simulation at the first episode's scene (`calibrate` is LeRobot's; a model needs none)."""
        if self.env is not None:
            raise RuntimeError("the simulated arm is already connected")
        self.env = SO101PaperSquareEnv(**self.env_options)
        model = self.env.model
        self._qpos = np.array([model.jnt_qposadr[model.joint(name).id] for name in JOINT_NAMES])
        self.episode, self.finished_episodes = 0, []
        self._start_episode()

    def disconnect(self) -> None:
        self._check_connected()
        self.env.close()
        self.env = None

    def _check_connected(self) -> None:
        if self.env is None:
            raise RuntimeError("the simulated arm is not connected: call connect() first")

    def _start_episode(self) -> None:
        self._state, _ = self.env.reset(seed=self.seed + self.episode)
        self._steps = 0

    # ------------------------------------------------------------------ observing and acting
    def joint_positions(self) -> np.ndarray:
        """The measured joint positions in radians (6,), as the env's qpos holds them (float64)."""
        self._check_connected()
        return self.env.data.qpos[self._qpos].copy()

    def task_state(self) -> np.ndarray:
        """The task's 25-float state (so101_env's observation: joints, velocities, paper pose, tip, paper-to-goal),
        what the project's state-based policies were trained on. Only a simulator knows the paper's pose: a real
        arm has no such sensor."""
        self._check_connected()
        return self._state.copy()

    def get_observation(self) -> dict:
        self._check_connected()
        observation = joints_to_dict(self.joint_positions(), self.units)
        if self.camera_names:
            images = self.env.render_cameras()
            observation |= {name: images[name] for name in self.camera_names}
        return observation

    def send_action(self, action: dict) -> dict:
        """Move the servos' goals to the joint positions of `action` (in the arm's units), within the joint
        ranges and `max_relative_target` of the present positions, and simulate one policy period. Returns the
        goals sent, in the arm's units. At the end of a task episode the scene resets to the next seed."""
        self._check_connected()
        present = self.joint_positions()
        goal = joints_from_dict(action, self.units)
        goal = limit_targets(goal, present, *joint_ranges(), self.max_step)
        self._state, _, terminated, truncated, info = self.env.step((goal - present) / SERVO_STEP)
        self._steps += 1
        if terminated or truncated:
            self.finished_episodes.append({"seed": self.seed + self.episode, "success": bool(info["success"]),
                                           "steps": self._steps, "final_distance": float(info["dist_to_goal"])})
            self.episode += 1
            self._start_episode()
        return joints_to_dict(goal, self.units)

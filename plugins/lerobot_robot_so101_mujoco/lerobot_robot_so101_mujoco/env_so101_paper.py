"""The paper-in-square task as a LeRobot environment (--env.type=so101_paper), for lerobot-eval.

The environment is the simulated arm of so101_mujoco with the task's episodes: a policy sees what that robot's
datasets record, under LeRobot's names, and sends what they record as actions:

    observation.state                  "agent_pos": joint positions (6) in LeRobot's SO-101 units
    observation.images.top_view/wrist  "pixels": the cameras (obs_type pixels_agent_pos)
    observation.environment_state      the task's 25-float state (so101_env), which only a simulator has
    action                             joint-position goals (6) in the same units

Episode i of `lerobot-eval --seed S` is reset with seed S + i, as eval_policy.py's; success ends it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig
from lerobot.utils.constants import ACTION, OBS_ENV_STATE, OBS_IMAGES, OBS_STATE

from groot_base import GROOT_DEFAULT_INSTRUCTION
from joint_units import joint_ranges, radians_to_units, units_to_radians
from sim_arm import SERVO_STEP, lerobot_units, limit_targets
from so101_env import CAMERA_NAMES, JOINT_NAMES, POLICY_HZ, STATE_DIM, SO101PaperSquareEnv

GYM_ID = "lerobot_robot_so101_mujoco/PaperSquare-v0"
OBS_TYPES = ("pixels_agent_pos", "agent_pos")


class PaperSquareEnv(gym.Env):
    """SO101PaperSquareEnv driven by joint-position goals, observed as LeRobot's simulation benchmarks are."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": POLICY_HZ}
    task = "paper_in_square"
    task_description = GROOT_DEFAULT_INSTRUCTION

    def __init__(self, obs_type: str = "pixels_agent_pos", use_degrees: bool = True, image_size: int = 224,
                 episode_length: int = 400, render_mode: str = "rgb_array"):
        if obs_type not in OBS_TYPES:
            raise ValueError(f"obs_type must be one of {OBS_TYPES}, got {obs_type!r}")
        self.obs_type, self.units, self.render_mode = obs_type, lerobot_units(use_degrees), render_mode
        self.env = SO101PaperSquareEnv(render_mode=render_mode, image_size=image_size, act_scale=SERVO_STEP,
                                       max_episode_steps=episode_length)
        self._max_episode_steps = episode_length
        model = self.env.model
        self._qpos = np.array([model.jnt_qposadr[model.joint(name).id] for name in JOINT_NAMES])
        low, high = (radians_to_units(bound, self.units) for bound in joint_ranges())
        self.action_space = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        spaces = {"agent_pos": gym.spaces.Box(-np.inf, np.inf, (len(JOINT_NAMES),), np.float64),
                  "environment_state": gym.spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32)}
        if obs_type == "pixels_agent_pos":
            image = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
            spaces["pixels"] = gym.spaces.Dict({camera: image for camera in CAMERA_NAMES})
        self.observation_space = gym.spaces.Dict(spaces)

    def _observation(self, state: np.ndarray) -> dict:
        observation = {"agent_pos": radians_to_units(self.env.data.qpos[self._qpos], self.units),
                       "environment_state": state}
        if self.obs_type == "pixels_agent_pos":
            observation["pixels"] = self.env.render_cameras()
        return observation

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        state, info = self.env.reset(seed=seed)
        return self._observation(state), info

    def step(self, action):
        """`action`: joint-position goals (6) in the env's units, held within the joint ranges; the servos move
        toward them at most SERVO_STEP radians per step, as the so101_mujoco robot's."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (len(JOINT_NAMES),) or not np.isfinite(action).all():
            raise ValueError(f"the action must be {len(JOINT_NAMES)} finite joint positions, got {action}")
        present = self.env.data.qpos[self._qpos].copy()
        goal = limit_targets(units_to_radians(action, self.units), present, *joint_ranges(), None)
        state, reward, terminated, truncated, info = self.env.step((goal - present) / SERVO_STEP)
        info["is_success"] = info["success"]
        return self._observation(state), reward, terminated, truncated, info

    def render(self):
        return self.env.render()

    def close(self):
        self.env.close()


if GYM_ID not in gym.registry:
    gym.register(id=GYM_ID, entry_point=f"{__name__}:PaperSquareEnv")


@EnvConfig.register_subclass("so101_paper")
@dataclass
class SO101PaperEnv(EnvConfig):
    task: str | None = "PaperSquare-v0"
    fps: int = POLICY_HZ
    episode_length: int = 400
    obs_type: str = "pixels_agent_pos"
    """pixels_agent_pos: joints, the two cameras and the task state; agent_pos: no cameras (nothing is rendered)"""
    use_degrees: bool = True
    """joint units as so101_follower's option: degrees (gripper 0-100), else LeRobot's older [-100, 100]"""
    image_size: int = 224
    features: dict[str, PolicyFeature] = field(default_factory=lambda: {
        ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(len(JOINT_NAMES),)),
        "agent_pos": PolicyFeature(type=FeatureType.STATE, shape=(len(JOINT_NAMES),)),
        "environment_state": PolicyFeature(type=FeatureType.ENV, shape=(STATE_DIM,)),
    })
    features_map: dict[str, str] = field(default_factory=lambda: {
        ACTION: ACTION, "agent_pos": OBS_STATE, "environment_state": OBS_ENV_STATE,
        **{f"pixels/{camera}": f"{OBS_IMAGES}.{camera}" for camera in CAMERA_NAMES},
    })

    def __post_init__(self):
        if self.fps != POLICY_HZ:
            raise ValueError(f"the so101_paper env steps at the policy rate, {POLICY_HZ} Hz; got --env.fps={self.fps}")
        if self.obs_type not in OBS_TYPES:
            raise ValueError(f"--env.obs_type must be one of {OBS_TYPES}, got {self.obs_type!r}")
        if self.obs_type == "pixels_agent_pos":
            for camera in CAMERA_NAMES:
                self.features[f"pixels/{camera}"] = PolicyFeature(type=FeatureType.VISUAL,
                                                                  shape=(self.image_size, self.image_size, 3))

    @property
    def package_name(self) -> str:
        return "lerobot_robot_so101_mujoco"

    @property
    def gym_kwargs(self) -> dict:
        return {"obs_type": self.obs_type, "use_degrees": self.use_degrees, "image_size": self.image_size,
                "episode_length": self.episode_length}

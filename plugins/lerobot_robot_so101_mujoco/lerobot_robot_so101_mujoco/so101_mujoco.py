"""The simulated SO-101 behind LeRobot's Robot interface, and its scripted teleoperator.

Each action the recorder (or any LeRobot loop) sends is one policy period (1/30 s) of simulation; the arm
observes its joints in LeRobot's SO-101 units and renders its top_view and wrist cameras (sim_arm.SimulatedArm).
"""

from __future__ import annotations

from lerobot.robots import Robot
from lerobot.teleoperators import Teleoperator

from base_policies import JacobianBasePolicy
from lerobot_dataset import ENVIRONMENT_STATE_NAMES
from sim_arm import JOINT_KEYS, SimulatedArm, joints_to_dict
from so101_env import ACTION_DIM

from .config_so101_mujoco import SO101MujocoConfig, SO101MujocoExpertConfig

_connected_arms: list[SO101Mujoco] = []
"""the simulated arms connected in this process: the expert teleoperator drives the one there is"""


class SO101Mujoco(Robot):
    config_class = SO101MujocoConfig
    name = "so101_mujoco"

    def __init__(self, config: SO101MujocoConfig):
        super().__init__(config)
        self.config = config
        self.arm = SimulatedArm(use_degrees=config.use_degrees, cameras=tuple(config.camera_names),
                                image_size=config.image_size, seed=config.seed, episode_steps=config.episode_steps,
                                max_relative_target=config.max_relative_target)
        self.cameras = {name: (config.image_size, config.image_size, 3) for name in self.arm.camera_names}

    @property
    def observation_features(self) -> dict:
        task_state = dict.fromkeys(ENVIRONMENT_STATE_NAMES, float) if self.config.task_state else {}
        return {**self.arm.observation_features, **task_state}

    @property
    def action_features(self) -> dict:
        return self.arm.action_features

    @property
    def is_connected(self) -> bool:
        return self.arm.is_connected

    def connect(self, calibrate: bool = True) -> None:
        self.arm.connect()
        _connected_arms.append(self)

    @property
    def is_calibrated(self) -> bool:
        return self.arm.is_calibrated

    def calibrate(self) -> None:
        pass

    def configure(self) -> None:
        pass

    def get_observation(self) -> dict:
        observation = self.arm.get_observation()
        if self.config.task_state:
            observation |= dict(zip(ENVIRONMENT_STATE_NAMES, self.arm.task_state()[ACTION_DIM:].tolist()))
        return observation

    def send_action(self, action: dict) -> dict:
        return self.arm.send_action(action)

    def disconnect(self) -> None:
        self.arm.disconnect()
        _connected_arms.remove(self)

    # What only a simulator knows, for deploy.py: the task state, and the task episodes of the scene.
    simulated = True

    def task_state(self):
        return self.arm.task_state()

    @property
    def episode(self) -> int:
        return self.arm.episode

    @property
    def finished_episodes(self) -> list[dict]:
        return self.arm.finished_episodes


class SO101MujocoExpert(Teleoperator):
    """The project's scripted Jacobian controller (the `jacobian` base) as a teleoperator: it reads the paper's
    pose from the simulation of the so101_mujoco arm connected in the same process, so LeRobot's recorder
    records demonstrations with no person at the controls. It moves the joints as the jacobian base does in
    training (0.02 rad per step at most) and starts over with each new task episode of the arm."""

    config_class = SO101MujocoExpertConfig
    name = "so101_mujoco_expert"

    def __init__(self, config: SO101MujocoExpertConfig):
        super().__init__(config)
        self.config = config
        self.base: JacobianBasePolicy | None = None
        self._episode: int | None = None

    @property
    def action_features(self) -> dict:
        return dict.fromkeys(JOINT_KEYS, float)

    @property
    def feedback_features(self) -> dict:
        return {}

    @property
    def is_connected(self) -> bool:
        return self.base is not None

    def connect(self, calibrate: bool = True) -> None:
        self.base = JacobianBasePolicy(num_envs=1)

    @property
    def is_calibrated(self) -> bool:
        return True

    def calibrate(self) -> None:
        pass

    def configure(self) -> None:
        pass

    def get_action(self) -> dict:
        if len(_connected_arms) != 1:
            raise RuntimeError(
                f"the so101_mujoco_expert teleoperator drives the simulated arm of its own process (--robot.type="
                f"so101_mujoco); {len(_connected_arms)} are connected here")
        arm = _connected_arms[0].arm
        if arm.episode != self._episode:  # the scene was reset: a new task episode
            self.base.reset()
            self._episode = arm.episode
        action = self.base.act(arm.task_state()[None])[0]
        return joints_to_dict(arm.joint_positions() + self.base.act_scale * action, arm.units)

    def send_feedback(self, feedback: dict) -> None:
        pass

    def disconnect(self) -> None:
        self.base = None

"""Options of the simulated arm (--robot.type=so101_mujoco --robot.<option>=...) and of its scripted teleoperator."""

from dataclasses import dataclass, field

from lerobot.robots import RobotConfig
from lerobot.teleoperators import TeleoperatorConfig


@RobotConfig.register_subclass("so101_mujoco")
@dataclass
class SO101MujocoConfig(RobotConfig):
    use_degrees: bool = True
    """joint units as so101_follower's option of that name: degrees, else LeRobot's older [-100, 100]; the gripper is
    0-100 either way"""
    camera_names: list[str] = field(default_factory=lambda: ["top_view", "wrist"])
    """the simulated cameras to observe (top_view, wrist); none for joints only"""
    image_size: int = 224
    """pixels of each square camera image (16 to 480)"""
    seed: int = 0
    """the scene of task episode i is reset with seed + i (the paper's pose, friction and mass)"""
    episode_steps: int = 400
    """steps (1/30 s each) after which an unfinished task episode ends and the scene resets"""
    max_relative_target: float | None = None
    """as so101_follower's: the most a goal may lie from the present position, per joint, in the arm's units"""
    task_state: bool = False
    """also observe the task's 19 other state values (joint velocities, paper pose, gripper tip, paper-to-goal; named
    as lerobot_dataset.ENVIRONMENT_STATE_NAMES), which only a simulator knows and the project's state-based BC trains
    on; LeRobot's recorder puts every number a robot observes in observation.state, so they follow the 6 joints there"""


@TeleoperatorConfig.register_subclass("so101_mujoco_expert")
@dataclass
class SO101MujocoExpertConfig(TeleoperatorConfig):
    """The project's scripted Jacobian controller as a teleoperator of the so101_mujoco arm of the same process."""

"""LeRobot plugin for this repository's simulated SO-101 and its paper-in-square task.

LeRobot's commands (lerobot-record, -replay, -teleoperate, -rollout, -eval) import every installed
distribution whose name starts with lerobot_robot_; importing this one registers:

    robot        so101_mujoco          the simulated arm (sim_arm.py): joints in LeRobot's SO-101 units, cameras top_view and wrist
    teleoperator so101_mujoco_expert   the scripted Jacobian controller driving that arm: automatic demonstrations
    env          so101_paper           the task as a LeRobot environment, for lerobot-eval
    policy       so101_residual        this project's bases and residual checkpoints, for lerobot-eval

It is a thin adapter: the simulation, units and policies are the repository's own modules, imported from the
checkout this package was installed from (pip install -e plugins/lerobot_robot_so101_mujoco).
"""

import pathlib
import sys

REPOSITORY = pathlib.Path(__file__).resolve().parents[3]
if not (REPOSITORY / "sim_arm.py").is_file():
    raise ImportError(
        f"lerobot_robot_so101_mujoco imports the project's modules (sim_arm.py, so101_env.py, ...) from the checkout it "
        f"was installed from, but {REPOSITORY} holds none: install it editable from the repository, "
        f"pip install -e plugins/lerobot_robot_so101_mujoco")
if str(REPOSITORY) not in sys.path:
    sys.path.append(str(REPOSITORY))

from .config_so101_mujoco import SO101MujocoConfig, SO101MujocoExpertConfig  # noqa: E402
from .configuration_so101_residual import SO101ResidualConfig  # noqa: E402
from .env_so101_paper import SO101PaperEnv  # noqa: E402
from .so101_mujoco import SO101Mujoco, SO101MujocoExpert  # noqa: E402

__all__ = ["SO101Mujoco", "SO101MujocoConfig", "SO101MujocoExpert", "SO101MujocoExpertConfig", "SO101PaperEnv",
           "SO101ResidualConfig"]

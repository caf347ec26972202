"""Options of this project's policies in LeRobot (--policy.type=so101_residual --policy.<option>=...)."""

from dataclasses import dataclass

from lerobot.configs import FeatureType, PreTrainedConfig
from lerobot.utils.constants import ACTION, OBS_ENV_STATE

from base_policies import BASE_POLICIES
from so101_env import ACTION_DIM, STATE_DIM


@PreTrainedConfig.register_subclass("so101_residual")
@dataclass
class SO101ResidualConfig(PreTrainedConfig):
    """A residual checkpoint of this project on its base (--policy.model_path), or a base alone (--policy.base_policy),
    run as eval_policy.py runs them. They read the task's state (observation.environment_state), which the so101_paper
    env provides; they are trained by the project's scripts, not by lerobot-train."""

    model_path: str | None = None
    """residual checkpoint (best.pt / final.pt of a training run)"""
    base_policy: str | None = None
    """base policy to run alone: zero, jacobian, il, hybrid or groot (the small sim GR00T in checkpoints/)"""
    il_checkpoint: str | None = None
    """BC checkpoint (train_bc.py) of an il base or of the il members of a hybrid one"""
    hybrid_spec: str | None = None
    """members of a hybrid base as name:weight pairs, e.g. "il:0.5,jacobian:0.5" """
    use_degrees: bool = True
    """the env's joint units (as its --env.use_degrees): degrees (gripper 0-100), else LeRobot's [-100, 100]"""
    seed: int = 0
    """seed of a GR00T base's flow noise"""

    def __post_init__(self):
        super().__post_init__()
        if (self.model_path is None) == (self.base_policy is None):
            raise ValueError("so101_residual runs a residual checkpoint or a base alone: give one of "
                             "--policy.model_path CHECKPOINT or --policy.base_policy NAME")
        if self.base_policy is not None and self.base_policy not in [*BASE_POLICIES, "groot"]:
            raise ValueError(f"--policy.base_policy must be one of {[*BASE_POLICIES, 'groot']}, got {self.base_policy!r}")

    @property
    def observation_delta_indices(self) -> None:
        return None

    @property
    def action_delta_indices(self) -> None:
        return None

    @property
    def reward_delta_indices(self) -> None:
        return None

    def get_optimizer_preset(self):
        raise ValueError("so101_residual runs policies trained by this project's scripts; lerobot-train cannot train it")

    def get_scheduler_preset(self) -> None:
        return None

    def validate_features(self) -> None:
        state = self.input_features.get(OBS_ENV_STATE)
        if state is None or state.type is not FeatureType.ENV or tuple(state.shape) != (STATE_DIM,):
            raise ValueError(f"so101_residual reads the task's {STATE_DIM}-float state as {OBS_ENV_STATE}: evaluate it "
                             f"on the so101_paper env (--env.type=so101_paper)")
        action = self.output_features.get(ACTION)
        if action is None or tuple(action.shape) != (ACTION_DIM,):
            raise ValueError(f"so101_residual sends {ACTION_DIM} joint positions as {ACTION}, got {action}")

"""This project's bases and residual checkpoints as a LeRobot policy (see configuration_so101_residual)."""

from __future__ import annotations

import numpy as np
import torch
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.utils.constants import OBS_ENV_STATE, OBS_IMAGES

from base_policies import QPOS, base_policy_kwargs, make_base_policy
from checkpoint_io import load_actor_program, load_checkpoint
from groot_base import GrootOptions
from joint_units import radians_to_units
from residual_policy import load_residual
from sim_arm import lerobot_units

from .configuration_so101_residual import SO101ResidualConfig


class SO101ResidualPolicy(PreTrainedPolicy):
    config_class = SO101ResidualConfig
    name = "so101_residual"

    def __init__(self, config: SO101ResidualConfig, **kwargs):
        super().__init__(config)
        config.validate_features()
        self.config = config
        self.units = lerobot_units(config.use_degrees)
        if config.model_path is not None:  # a wrong file is refused here, not at the first step of an evaluation
            load_actor_program(load_checkpoint(config.model_path), config.model_path)
        self.policy = None  # built at the first batch, for its number of envs

    def _build(self, num_envs: int):
        config = self.config
        if config.model_path is not None:
            return load_residual(config.model_path, GrootOptions.unset(), config.device, config.seed,
                                 "run it with eval_policy.py or deploy.py, which take --groot.* options", num_envs)
        kwargs = base_policy_kwargs(config.base_policy, config.il_checkpoint, config.hybrid_spec)
        if config.base_policy == "groot":
            kwargs |= GrootOptions().base_kwargs() | {"device": config.device, "seed": config.seed}
        return make_base_policy(config.base_policy, num_envs=num_envs, **kwargs)

    def get_optim_params(self) -> dict:
        return {}

    def reset(self):
        if self.policy is not None:
            self.policy.reset()

    def forward(self, batch):
        raise ValueError("so101_residual runs policies trained by this project's scripts; lerobot-train cannot train it")

    def predict_action_chunk(self, batch, **kwargs) -> torch.Tensor:
        return self.select_action(batch)[:, None]

    @torch.no_grad()
    def select_action(self, batch, **kwargs) -> torch.Tensor:
        """Joint-position goals (B, 6) in the env's units: the policy's normalized joint deltas times its act_scale,
        added to the joint positions of the task state, as SO101PaperSquareEnv applies them."""
        states = batch[OBS_ENV_STATE].cpu().numpy()
        if self.policy is None:
            self.policy = self._build(len(states))
        images = None
        if self.policy.images_needed().any():  # the env's pixels come as floats in [0, 1], channels first
            images = {key.removeprefix(f"{OBS_IMAGES}."): (batch[key] * 255).round().to(torch.uint8)
                      .permute(0, 2, 3, 1).cpu().numpy() for key in batch if key.startswith(f"{OBS_IMAGES}.")}
        actions = self.policy.act(states, images)
        goals = states[:, QPOS].astype(np.float64) + self.policy.act_scale * actions
        return torch.from_numpy(radians_to_units(goals, self.units))

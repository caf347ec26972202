"""The one episode loop: a policy on a seeded episode, optionally filmed, and a residual on its base.

Used by eval_policy.py, the training scripts' periodic evaluation and train_bc.py's check, so all of
them count success, reward and final distance the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from base_policies import BasePolicy, camera_images, compose_action


@dataclass
class EpisodeRecord:
    seed: int
    success: bool
    reward: float
    final_distance: float
    """paper-to-goal distance at the end; NaN when the simulation blew up and truncated the episode"""
    final_orientation_error: float
    length: int
    unstable: bool = False


def run_episode(env, policy, seed: int, frames: list | None = None) -> EpisodeRecord:
    """One episode of `policy` (anything with reset / images_needed / act) on `env` reset with `seed`;
    dual-camera frames are appended to `frames` when given."""
    obs, _ = env.reset(seed=seed)
    policy.reset()
    total, length = 0.0, 0
    while True:
        if frames is not None:
            frames.append(env.render())
        action = policy.act(obs[None], camera_images(policy, lambda: [env.render_cameras()]))
        obs, reward, terminated, truncated, info = env.step(action[0])
        total += reward
        length += 1
        if terminated or truncated:
            return EpisodeRecord(
                seed=seed,
                success=bool(info["success"]),
                reward=float(total),
                final_distance=float(info["dist_to_goal"]),
                final_orientation_error=float(info["orientation_error"]),
                length=length,
                unstable=bool(info.get("sim_unstable", False)),
            )


class ResidualPolicy:
    """A residual on top of its base, deterministic: `base + alpha * residual_mean(states, base_action)`."""

    def __init__(self, base: BasePolicy, residual_mean: Callable[[np.ndarray, np.ndarray], np.ndarray], alpha: float,
                 name: str | None = None):
        self.base, self.residual_mean, self.alpha = base, residual_mean, alpha
        self.act_scale, self.needs_images = base.act_scale, base.needs_images
        self.name = name or f"residual+{base.name}"

    def reset(self, mask: np.ndarray | None = None) -> None:
        self.base.reset(mask)

    def images_needed(self) -> np.ndarray:
        return self.base.images_needed()

    def act(self, states: np.ndarray, images: dict[str, np.ndarray] | None = None) -> np.ndarray:
        base_action = self.base.act(states, images)
        action = compose_action(base_action, self.residual_mean(states, base_action), self.alpha)
        self.base.executed(action)
        return action

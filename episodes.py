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


def residual_states(base: BasePolicy, states: np.ndarray, observes_plan: bool, envs: np.ndarray | None = None) -> np.ndarray:
    """What a residual sees of `envs` (all when None): their (k, 25) env states and, when it
    `observes_plan`, the base's `plan_features` of them (call it after the base has acted)."""
    return np.concatenate([states, base.plan_features(states, envs)], axis=1) if observes_plan else states


class ResidualPolicy:
    """A residual on top of its base, deterministic: `base + alpha * residual_mean(states, base_action)`.

    With `observes_plan` the residual's states also carry the base's `plan_features` (a chunking base's
    remaining chunk), appended after the base has acted, as the GR00T training script feeds them."""

    def __init__(self, base: BasePolicy, residual_mean: Callable[[np.ndarray, np.ndarray], np.ndarray], alpha: float,
                 name: str | None = None, observes_plan: bool = False):
        if observes_plan and not hasattr(base, "plan_features"):
            raise ValueError(f"the residual observes its base's chunk plan, but the {base.name} base has none")
        self.base, self.residual_mean, self.alpha, self.observes_plan = base, residual_mean, alpha, observes_plan
        self.act_scale, self.needs_images = base.act_scale, base.needs_images
        self.name = name or f"residual+{base.name}"

    def reset(self, mask: np.ndarray | None = None) -> None:
        self.base.reset(mask)

    def images_needed(self) -> np.ndarray:
        return self.base.images_needed()

    def act(self, states: np.ndarray, images: dict[str, np.ndarray] | None = None) -> np.ndarray:
        base_action = self.base.act(states, images)
        residual = self.residual_mean(residual_states(self.base, states, self.observes_plan), base_action)
        action = compose_action(base_action, residual, self.alpha)
        self.base.executed(action)
        return action

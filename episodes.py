"""The one episode loop: a policy on a seeded episode, optionally filmed.

Used by eval_policy.py, the training scripts' periodic evaluation and train_bc.py's check, so all of
them count success, reward and final distance the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from base_policies import camera_images


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

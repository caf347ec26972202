"""Record demonstrations of a base policy in the sim as a LeRobot dataset (layout: lerobot_dataset.py).

    python record_demos.py --n-episodes 200 --output-dir runs/demos/jacobian
    python record_demos.py --dart-noise-std 0.0 --output-dir runs/demos/jacobian_clean
    python record_demos.py --base-policy il --il-checkpoint runs/<run>/checkpoints/bc.pt --output-dir runs/demos/il

Attempt j is reset with seed `seed + j`; by default only successful episodes are kept, until
`--n-episodes` of them are recorded. The default seeds start at 100000, away from the seeds
eval_policy.py uses (0, 1, ...), so a policy cloned from these demos is evaluated on new papers.

DART-style noise (`--dart-noise-std`): Gaussian noise is added to the action the env executes,
while the dataset keeps the demonstrator's own action as the label. The demonstrator then
shows how it recovers from the small deviations a cloned policy will make. It is on by default
(0.1): a policy cloned from noise-free Jacobian demos succeeded as often on clean episodes but
failed every episode once a residual's exploration noise (std 0.07) was added to its actions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import tyro

from base_policies import BASE_POLICIES, act_with_cameras, base_policy_kwargs, make_base_policy
from lerobot_dataset import JOINT_UNITS, DatasetWriter
from so101_env import SO101PaperSquareEnv


@dataclass
class Args:
    output_dir: str = "runs/demos/jacobian"
    """dataset directory to write (LeRobot v2.0 layout)"""
    base_policy: str = "jacobian"
    """demonstrator: any base policy (jacobian, il, hybrid, ...)"""
    il_checkpoint: str | None = None
    """BC checkpoint for an il demonstrator (or il members of a hybrid one)"""
    hybrid_spec: str | None = None
    """members of a hybrid demonstrator as name:weight pairs, e.g. "il:0.5,jacobian:0.5" """
    n_episodes: int = 200
    """episodes to keep"""
    max_attempts: int | None = None
    """stop after this many attempts even if fewer episodes were kept (default: 5 * n_episodes)"""
    keep_failures: bool = False
    """keep failed episodes as well"""
    seed: int = 100_000
    """attempt j is reset with seed `seed + j`"""
    units: str = "degrees"
    """joint units of observation.state and action: radians, degrees (LeRobot's default), range ([-100, 100])"""
    dart_noise_std: float = 0.1
    """std of Gaussian noise added to the executed normalized action; the label stays clean"""
    act_scale: float = 0.02
    """radians of joint-target change per unit of normalized action"""
    tape_half_size: float = 0.08
    """inner half-size of the tape square in metres"""
    overwrite: bool = False
    """replace a dataset already in --output-dir"""


def main(args: Args) -> DatasetWriter:
    if args.base_policy not in BASE_POLICIES:
        raise SystemExit(f"unknown --base-policy {args.base_policy!r}; choose one of {sorted(BASE_POLICIES)}")
    if args.units not in JOINT_UNITS:
        raise SystemExit(f"unknown --units {args.units!r}; choose one of {', '.join(JOINT_UNITS)}")
    if args.n_episodes < 1 or args.dart_noise_std < 0:
        raise SystemExit("--n-episodes must be positive and --dart-noise-std non-negative")
    torch.set_num_threads(1)  # an il demonstrator's small network runs fastest on one thread
    try:
        kwargs = base_policy_kwargs(args.base_policy, args.il_checkpoint, args.hybrid_spec)
        demonstrator = make_base_policy(args.base_policy, num_envs=1, act_scale=args.act_scale, **kwargs)
        provenance = {"demonstrator": demonstrator.config(), "dart_noise_std": args.dart_noise_std,
                      "seed": args.seed, "tape_half_size": args.tape_half_size}
        writer = DatasetWriter(args.output_dir, args.units, args.act_scale, provenance, args.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        raise SystemExit(f"cannot record: {error}") from error

    env = SO101PaperSquareEnv(act_scale=args.act_scale, tape_half_size=args.tape_half_size)
    noise = np.random.default_rng(args.seed)
    max_attempts = args.max_attempts or 5 * args.n_episodes
    attempts, successes, start = 0, 0, time.perf_counter()
    try:
        while len(writer.lengths) < args.n_episodes and attempts < max_attempts:
            obs, _ = env.reset(seed=args.seed + attempts)
            demonstrator.reset()
            states, actions, rewards = [], [], []
            done = False
            while not done:
                action = act_with_cameras(demonstrator, obs[None], lambda: [env.render_cameras()])[0]
                executed = action + noise.normal(0.0, args.dart_noise_std, action.shape) if args.dart_noise_std else action
                states.append(obs)
                actions.append(action)
                obs, reward, terminated, truncated, info = env.step(np.clip(executed, -1.0, 1.0))
                rewards.append(reward)
                done = terminated or truncated
            attempts += 1
            successes += bool(info["success"])
            if info["success"] or args.keep_failures:
                writer.add_episode(np.array(states), np.array(actions), np.array(rewards), bool(info["success"]))
            if attempts % 10 == 0 or len(writer.lengths) == args.n_episodes:
                print(
                    f"attempt {attempts}: kept {len(writer.lengths)}/{args.n_episodes} episodes, "
                    f"{sum(writer.lengths)} frames, demonstrator success {successes / attempts:.0%}, "
                    f"{time.perf_counter() - start:.0f} s",
                    flush=True,
                )
    except KeyboardInterrupt:
        print("\ninterrupted: writing the meta files for the episodes recorded so far")
    finally:
        writer.close()
        env.close()
    print(f"wrote {len(writer.lengths)} episodes ({sum(writer.lengths)} frames) to {args.output_dir}")
    return writer


if __name__ == "__main__":
    main(tyro.cli(Args))

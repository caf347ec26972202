"""Evaluate base policies on seeded episodes of SO101PaperSquare-v0.

    python eval_policy.py --base-policy jacobian --n-episodes 100 --seed 0 --output-json runs/eval.json

Episode i uses reset seed `seed + i`, so every policy meets the same 100 papers. Prints the
success rate with a 95 % Wilson interval, mean episode reward, mean final paper-to-goal
distance and mean episode length.
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from dataclasses import dataclass

import numpy as np
import tyro

from base_policies import BASE_POLICIES, BasePolicy, make_base_policy
from so101_env import SO101PaperSquareEnv


@dataclass
class Args:
    base_policy: str = "jacobian"
    """base policy to evaluate: zero or jacobian"""
    n_episodes: int = 100
    """number of evaluation episodes"""
    seed: int = 0
    """episode i is reset with seed `seed + i`"""
    tape_half_size: float = 0.08
    """inner half-size of the tape square in metres"""
    output_json: str | None = None
    """write the summary and per-episode records to this JSON file"""


@dataclass
class EpisodeRecord:
    seed: int
    success: bool
    reward: float
    final_distance: float
    final_orientation_error: float
    length: int


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate; honest at 0 % and 100 % too."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def run_episode(env: SO101PaperSquareEnv, policy: BasePolicy, seed: int) -> EpisodeRecord:
    obs, _ = env.reset(seed=seed)
    policy.reset()
    total, length = 0.0, 0
    while True:
        obs, reward, terminated, truncated, info = env.step(policy.act(obs[None])[0])
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
            )


def summarize(name: str, records: list[EpisodeRecord]) -> dict:
    successes = sum(r.success for r in records)
    low, high = wilson_interval(successes, len(records))
    return {
        "policy": name,
        "n_episodes": len(records),
        "success_rate": successes / len(records),
        "success_rate_ci95": [low, high],
        "mean_reward": float(np.mean([r.reward for r in records])),
        "mean_final_distance": float(np.mean([r.final_distance for r in records])),
        "mean_episode_length": float(np.mean([r.length for r in records])),
        "episodes": [r.__dict__ for r in records],
    }


def evaluate(name: str, policy: BasePolicy, n_episodes: int, seed: int, tape_half_size: float = 0.08) -> dict:
    env = SO101PaperSquareEnv(tape_half_size=tape_half_size)
    start = time.perf_counter()
    records = []
    for i in range(n_episodes):
        records.append(run_episode(env, policy, seed + i))
        if (i + 1) % 10 == 0 or i + 1 == n_episodes:
            rate = sum(r.success for r in records) / len(records)
            print(f"  {name}: {i + 1}/{n_episodes} episodes, success so far {rate:.0%}", flush=True)
    env.close()
    summary = summarize(name, records)
    summary["seconds"] = time.perf_counter() - start
    return summary


def print_table(summaries: list[dict]) -> None:
    header = f"{'policy':<22}{'success':>9}{'95% CI':>16}{'reward':>10}{'final dist (m)':>16}{'length':>9}"
    print(header)
    print("-" * len(header))
    for s in summaries:
        low, high = s["success_rate_ci95"]
        print(
            f"{s['policy']:<22}{s['success_rate']:>9.1%}{f'[{low:.1%}, {high:.1%}]':>16}"
            f"{s['mean_reward']:>10.2f}{s['mean_final_distance']:>16.4f}{s['mean_episode_length']:>9.1f}"
        )


def main(args: Args) -> list[dict]:
    if args.n_episodes < 1:
        raise SystemExit(f"--n-episodes must be at least 1, got {args.n_episodes}")
    if args.base_policy not in BASE_POLICIES:
        raise SystemExit(f"unknown --base-policy {args.base_policy!r}; choose one of {sorted(BASE_POLICIES)}")
    policy = make_base_policy(args.base_policy, num_envs=1)
    summaries = [evaluate(args.base_policy, policy, args.n_episodes, args.seed, args.tape_half_size)]
    print_table(summaries)
    if args.output_json:
        path = pathlib.Path(args.output_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        result = summaries[0] if len(summaries) == 1 else {"policies": summaries}
        path.write_text(json.dumps({"seed": args.seed, **result}, indent=2))
        print(f"wrote {path}")
    return summaries


if __name__ == "__main__":
    main(tyro.cli(Args))

"""Throughput of the SO-101 paper-square scene, measured side by side in one run.

    python benchmark.py                  # prints a table
    python benchmark.py --seconds 5      # longer, steadier measurements

raw mj_step:  MuJoCo stepping the same scene with no Python in the loop (`nstep` batches);
              divided by 12 physics steps per policy step it is the ceiling for one env.
env.step:     SO101PaperSquareEnv.step with a fixed random action sequence, no rendering.
The ratio env / (raw / 12) is the SPEC target (>= 70 %). Both are timed on one core, in
alternating rounds, and the median round is reported so a noisy neighbour hurts both alike.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import mujoco
import numpy as np
import tyro

from so101_env import HOME_QPOS, PHYSICS_STEPS_PER_POLICY, SO101PaperSquareEnv


@dataclass
class Args:
    seconds: float = 2.0
    """approximate seconds per measurement round"""
    rounds: int = 5
    """alternating rounds per measurement; the median is reported"""


def raw_step_rate(env: SO101PaperSquareEnv, seconds: float) -> float:
    """Physics steps per second of the env's own model, arm holding its home pose."""
    m, d = env.model, env.data
    env.reset(seed=0)
    d.ctrl[:] = HOME_QPOS
    batch = 3600
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        mujoco.mj_step(m, d, nstep=batch)
        steps += batch
    return steps / (time.perf_counter() - start)


def env_step_rate(env: SO101PaperSquareEnv, seconds: float) -> float:
    actions = np.random.default_rng(0).uniform(-0.3, 0.3, size=(4096, 6))
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for action in actions[:256]:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        steps += 256
    return steps / (time.perf_counter() - start)


def main(args: Args) -> dict:
    env = SO101PaperSquareEnv()
    raw, stepped = [], []
    for _ in range(args.rounds):
        raw.append(raw_step_rate(env, args.seconds))
        stepped.append(env_step_rate(env, args.seconds))
    raw_rate, env_rate = statistics.median(raw), statistics.median(stepped)
    ceiling = raw_rate / PHYSICS_STEPS_PER_POLICY
    result = {"raw_mj_steps_per_s": raw_rate, "env_ceiling_steps_per_s": ceiling,
              "env_steps_per_s": env_rate, "env_over_ceiling": env_rate / ceiling}
    print(f"raw mj_step:            {raw_rate:10.0f} physics steps/s")
    print(f"ceiling (raw / {PHYSICS_STEPS_PER_POLICY}):     {ceiling:10.0f} env steps/s")
    print(f"SO101PaperSquareEnv:    {env_rate:10.0f} env steps/s  = {env_rate / ceiling:.1%} of the ceiling")
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))

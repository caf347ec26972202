"""Evaluate base policies and residual checkpoints on seeded episodes of SO101PaperSquare-v0.

    python eval_policy.py --base-policy jacobian --n-episodes 100 --seed 0 --output-json runs/eval.json
    python eval_policy.py --model-path runs/<run>/checkpoints/best.pt --compare-base --compare-zero \
        --n-episodes 100 --plot --save-video --output-json runs/eval/residual.json

Episode i uses reset seed `seed + i`, so every policy meets the same papers. Prints the success
rate with a 95 % Wilson interval, mean episode reward, mean final paper-to-goal distance and
mean episode length; optionally writes JSON, PNG charts and dual-camera MP4s.
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from dataclasses import dataclass

import imageio.v2 as imageio
import numpy as np
import torch
import tyro

import groot_base  # noqa: F401  registers the groot base
import so101_env
from base_policies import BASE_POLICIES, base_policy_kwargs, make_base_policy
from episodes import EpisodeRecord, ResidualPolicy, run_episode
from checkpoint_io import ResidualActor, load_checkpoint
from run_utils import option_problems
from so101_env import SO101PaperSquareEnv


@dataclass
class Args:
    base_policy: str | None = None
    """base policy to evaluate alone (zero, jacobian, il, hybrid, groot); with --model-path it must match the checkpoint's base"""
    il_checkpoint: str | None = None
    """BC checkpoint (train_bc.py) of an il base, also used by il members of a hybrid base"""
    hybrid_spec: str | None = None
    """members of a hybrid base as name:weight pairs, e.g. "il:0.5,jacobian:0.5" """
    model_path: str | None = None
    """residual checkpoint (best.pt / final.pt / latest.pt of a training run) to evaluate"""
    compare_base: bool = False
    """with --model-path: also evaluate the checkpoint's base policy alone"""
    compare_zero: bool = False
    """also evaluate the zero policy (the arm holds still): the floor of the task"""
    n_episodes: int = 100
    """number of evaluation episodes per policy"""
    seed: int = 0
    """episode i is reset with seed `seed + i`"""
    torch_threads: int = 1
    """torch intra-op threads; one suits the small residual and BC networks (more contend on a busy CPU)"""
    tape_half_size: float = 0.08
    """inner half-size of the tape square in metres"""
    output_json: str | None = None
    """write the summaries and per-episode records to this JSON file"""
    plot: bool = False
    """write PNG charts (success with 95 % intervals, final distances) next to the JSON (or to runs/eval)"""
    save_video: bool = False
    """write dual-camera MP4s of the first --n-videos episodes of each policy"""
    n_videos: int = 3
    """episodes per policy to record with --save-video"""
    video_size: int = 224
    """pixel size of each camera view in the videos; vision bases see the cameras at this size too"""
    groot_model: str | None = None
    """groot base: checkpoint directory or hub id (default phospho-app/gr00t-paper_return-7w9itxzsox, or the residual checkpoint's)"""
    groot_revision: str | None = None
    """groot base: hub branch/tag/commit of the checkpoint"""
    groot_tokenizer: str | None = None
    """groot base: Eagle 2.5 tokenizer directory or hub id"""
    groot_backend: str | None = None
    """groot base: local (model in this process) or server (inference server at --groot-host/--groot-port)"""
    groot_host: str | None = None
    """groot base: inference server host"""
    groot_port: int | None = None
    """groot base: inference server port"""
    groot_timeout: float | None = None
    """groot base: seconds to wait for the inference server's reply (default 15)"""
    groot_device: str | None = None
    """groot base: torch device of the local model (default: cuda if available)"""
    groot_dtype: str | None = None
    """groot base: bfloat16 or float32"""
    groot_chunk_steps: int | None = None
    """groot base: steps executed open-loop per 16-step action chunk"""
    groot_instruction: str | None = None
    """groot base: language instruction"""
    groot_camera_map: dict[str, str] | None = None
    """groot base: checkpoint camera -> sim camera (top_view, wrist), e.g. `front top_view wrist wrist`"""
    groot_units: str | None = None
    """groot base: joint units of the checkpoint (radians, degrees, range); default from its statistics"""


def groot_overrides(args: Args) -> dict:
    """GR00TBasePolicy keyword arguments of the --groot-* options that were given."""
    options = dict(
        checkpoint=args.groot_model, revision=args.groot_revision, tokenizer=args.groot_tokenizer,
        backend=args.groot_backend, host=args.groot_host, port=args.groot_port, timeout_s=args.groot_timeout,
        device=args.groot_device,
        dtype=args.groot_dtype, chunk_steps=args.groot_chunk_steps, instruction=args.groot_instruction,
        camera_map=args.groot_camera_map, units=args.groot_units,
        seed=args.seed,  # the flow-matching noise, so that a rerun replays the same episodes
    )
    return {name: value for name, value in options.items() if value is not None}


def residual_from_checkpoint(path: str, base_policy: str | None = None, groot_options: dict | None = None) -> ResidualPolicy:
    """A trained residual on top of its base, rebuilt from the checkpoint's weights and base config
    (no code is loaded from the file). `groot_options` replace the stored settings of a groot base
    (e.g. another backend or device)."""
    checkpoint = load_checkpoint(path, base_policy)
    base_config = dict(checkpoint["base_config"])
    base_name = base_config.pop("name")
    if base_name == "groot":
        base_config |= groot_options or {}
    base = make_base_policy(base_name, num_envs=1, **base_config)
    return ResidualPolicy(base, ResidualActor(checkpoint).residual_mean, checkpoint["alpha"])


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate; honest at 0 % and 100 % too."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(name: str, records: list[EpisodeRecord]) -> dict:
    successes = sum(r.success for r in records)
    distances = np.array([r.final_distance for r in records])
    low, high = wilson_interval(successes, len(records))
    return {
        "policy": name,
        "n_episodes": len(records),
        "success_rate": successes / len(records),
        "success_rate_ci95": [low, high],
        "mean_reward": float(np.mean([r.reward for r in records])),
        # Over the episodes that ended in a measured state: a blow-up (NaN) is counted, not averaged in.
        "mean_final_distance": float(np.nanmean(distances)) if not np.isnan(distances).all() else float("nan"),
        "unstable_episodes": sum(r.unstable for r in records),
        "mean_episode_length": float(np.mean([r.length for r in records])),
        "episodes": [r.__dict__ for r in records],
    }


def evaluate(name: str, policy, args: Args, video_dir: pathlib.Path | None = None) -> dict:
    env = SO101PaperSquareEnv(
        tape_half_size=args.tape_half_size,
        act_scale=policy.act_scale,
        render_mode="rgb_array" if video_dir else None,
        image_size=args.video_size,
    )
    start = time.perf_counter()
    records = []
    for i in range(args.n_episodes):
        frames = [] if video_dir and i < args.n_videos else None
        records.append(run_episode(env, policy, args.seed + i, frames))
        if frames:
            path = video_dir / f"{name}_seed{args.seed + i}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            imageio.mimwrite(path, frames, fps=so101_env.POLICY_HZ, macro_block_size=8)
            print(f"  wrote {path}")
        if (i + 1) % 10 == 0 or i + 1 == args.n_episodes:
            rate = sum(r.success for r in records) / len(records)
            print(f"  {name}: {i + 1}/{args.n_episodes} episodes, success so far {rate:.0%}", flush=True)
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


def plot_summaries(summaries: list[dict], path: pathlib.Path) -> None:
    """Success rates with 95 % intervals, and the distribution of final paper-to-goal distances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["policy"] for s in summaries]
    rates = np.array([s["success_rate"] for s in summaries])
    ci = np.array([s["success_rate_ci95"] for s in summaries])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.bar(names, 100 * rates, yerr=100 * np.abs(ci.T - rates), capsize=6, color="#c0392b")
    left.set_ylabel("success rate (%)")
    left.set_ylim(0, 105)
    left.set_title(f"Success over {summaries[0]['n_episodes']} episodes (95 % Wilson interval)")
    distances = [[100 * e["final_distance"] for e in s["episodes"]] for s in summaries]
    right.boxplot(distances, showfliers=True)
    right.set_xticks(range(1, len(names) + 1), names)
    right.set_ylabel("final paper-to-goal distance (cm)")
    right.set_title("Final distance")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def policies_to_evaluate(args: Args) -> list[tuple[str, object]]:
    policies = []
    if args.model_path:
        residual = residual_from_checkpoint(args.model_path, args.base_policy, groot_overrides(args))
        policies.append((residual.name, residual))
        if args.compare_base:
            policies.append((residual.base.name, residual.base))
    elif args.base_policy:
        kwargs = base_policy_kwargs(args.base_policy, args.il_checkpoint, args.hybrid_spec)
        if args.base_policy == "groot":
            kwargs |= groot_overrides(args)
        policies.append((args.base_policy, make_base_policy(args.base_policy, num_envs=1, **kwargs)))
    if args.compare_zero:
        policies.append(("zero", make_base_policy("zero", num_envs=1)))
    return policies


def main(args: Args) -> list[dict]:
    problems = option_problems(args, at_least=dict(n_episodes=1, torch_threads=1, n_videos=0, video_size=16,
                                                   tape_half_size=0.02, groot_chunk_steps=1, groot_port=0),
                               above=dict(groot_timeout=0.0), at_most=dict(tape_half_size=0.3, groot_port=65535))
    if problems:
        raise SystemExit("invalid arguments:\n  " + "\n  ".join(problems))
    if args.base_policy is not None and args.base_policy not in BASE_POLICIES:
        raise SystemExit(f"unknown --base-policy {args.base_policy!r}; choose one of {sorted(BASE_POLICIES)}")
    if args.base_policy is None and args.model_path is None:
        raise SystemExit("name something to evaluate: --base-policy NAME and/or --model-path CHECKPOINT")
    torch.set_num_threads(args.torch_threads)
    try:
        policies = policies_to_evaluate(args)
    except (FileNotFoundError, ValueError, TimeoutError, ConnectionError) as error:
        raise SystemExit(f"cannot evaluate: {error}") from error

    out_dir = pathlib.Path(args.output_json).parent if args.output_json else pathlib.Path("runs/eval")
    video_dir = out_dir / "videos" if args.save_video else None
    summaries = [evaluate(name, policy, args, video_dir) for name, policy in policies]
    print_table(summaries)
    if args.output_json:
        path = pathlib.Path(args.output_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        result = summaries[0] if len(summaries) == 1 else {"policies": summaries}
        path.write_text(json.dumps({"seed": args.seed, "model_path": args.model_path, **result}, indent=2))
        print(f"wrote {path}")
    if args.plot:
        stem = pathlib.Path(args.output_json).stem if args.output_json else "eval"
        plot_summaries(summaries, out_dir / f"{stem}.png")
        print(f"wrote {out_dir / f'{stem}.png'}")
    return summaries


if __name__ == "__main__":
    main(tyro.cli(Args))

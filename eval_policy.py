"""Evaluate base policies and residual checkpoints on seeded episodes of SO101PaperSquare-v0.

    python eval_policy.py --base-policy jacobian --n-episodes 100 --seed 0 --output-json runs/eval.json
    python eval_policy.py --model-path runs/<run>/checkpoints/best.pt --compare-base --compare-zero \
        --n-episodes 100 --plot --save-video --output-json runs/eval/residual.json
    python eval_policy.py --model-paths runs/seed1/checkpoints/final.pt runs/seed2/checkpoints/final.pt \
        runs/seed3/checkpoints/final.pt --compare-base --n-episodes 100 --output-json runs/eval/seeds.json
    python eval_policy.py --aggregate-json runs/eval/seed1.json runs/eval/seed2.json runs/eval/seed3.json
    python eval_policy.py --model-path checkpoints/residual_jacobian_seed1.pt --randomization-scale 2

Episode i uses reset seed `seed + i`, so every policy meets the same papers. Prints the success
rate with a 95 % Wilson interval, mean episode reward, mean final paper-to-goal distance and
mean episode length; optionally writes JSON, PNG charts and dual-camera MP4s.

Several checkpoints (one per training seed) are also summarized over seeds, as Agarwal et al.
(2021) recommend: the interquartile mean of their success rates with a percentile bootstrap 95 %
interval over checkpoints, the minimum and the mean (seed_statistics.py). `--aggregate-json`
computes the same from earlier JSON outputs, without running episodes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import imageio.v2 as imageio
import numpy as np
import torch
import tyro

import groot_base  # noqa: F401  registers the groot base
import so101_env
from base_policies import BASE_POLICIES, base_policy_kwargs, make_base_policy
from episodes import EpisodeRecord, ResidualPolicy, run_episode
from groot_n15 import NOISE_MODES
from checkpoint_io import ResidualActor, load_checkpoint
from run_utils import option_problems
from seed_statistics import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, aggregate, paired_difference
from so101_env import (MAX_RANDOMIZATION_SCALE, SO101PaperSquareEnv, describe_randomization, randomization_problems,
                       scaled_randomization)


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
    model_paths: list[str] | None = None
    """several residual checkpoints (e.g. one per training seed), each evaluated on the same episodes, then
    aggregated over checkpoints: IQM of their success rates with a bootstrap 95 % interval, minimum, mean
    (with --model-path, that one comes first)"""
    aggregate_json: list[str] | None = None
    """run no episodes: aggregate the checkpoint results of earlier --output-json files of this script (one
    checkpoint or several each) over checkpoints; they must come from the same episodes"""
    compare_base: bool = False
    """with --model-path(s): also evaluate the checkpoints' base policy alone (each distinct base once)"""
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
    randomization_scale: float = 1.0
    """multiplies all four domain-randomization ranges (paper position +-5 cm, yaw +-0.3 rad, paper-table
    friction +-20 %, paper mass +-10 %) for a robustness evaluation; within (0, 3]"""
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
    """groot base: bfloat16 or float32 (default: the checkpoint's, config.json torch_dtype)"""
    groot_chunk_steps: int | None = None
    """groot base: steps executed open-loop per action chunk (default: the whole chunk, 16 for N1.5)"""
    groot_instruction: str | None = None
    """groot base: language instruction"""
    groot_camera_map: dict[str, str] | None = None
    """groot base: checkpoint camera -> sim camera (top_view, wrist), e.g. `front top_view wrist wrist`"""
    groot_noise: str | None = None
    """groot base: where each chunk's flow starts, random (a Gaussian draw, Isaac's) or zero (its mean: deterministic);
    default: a residual checkpoint's base setting, else random"""
    groot_units: str | None = None
    """groot base: joint units of the checkpoint (radians, degrees, range); default: what finetune_groot.py recorded in the checkpoint, else read from its statistics"""


def groot_overrides(args: Args) -> dict:
    """GR00TBasePolicy keyword arguments of the --groot-* options that were given."""
    options = dict(
        checkpoint=args.groot_model, revision=args.groot_revision, tokenizer=args.groot_tokenizer,
        backend=args.groot_backend, host=args.groot_host, port=args.groot_port, timeout_s=args.groot_timeout,
        device=args.groot_device,
        dtype=args.groot_dtype, chunk_steps=args.groot_chunk_steps, instruction=args.groot_instruction,
        camera_map=args.groot_camera_map, units=args.groot_units, noise=args.groot_noise,
        seed=args.seed,  # the flow-matching noise, so that a rerun replays the same episodes
    )
    return {name: value for name, value in options.items() if value is not None}


def residual_from_checkpoint(path: str, base_policy: str | None = None, groot_options: dict | None = None) -> ResidualPolicy:
    """A trained residual on top of its base, rebuilt from the checkpoint's weights and base config
    (no code is loaded from the file). `groot_options` replace the stored settings of a groot base
    (e.g. another backend or device)."""
    return residual_from_loaded(load_checkpoint(path, base_policy), groot_options)


def residual_from_loaded(checkpoint: dict, groot_options: dict | None = None, name: str | None = None) -> ResidualPolicy:
    """`residual_from_checkpoint` for a checkpoint already read with `load_checkpoint`."""
    base_config = dict(checkpoint["base_config"])
    base_name = base_config.pop("name")
    if base_name == "groot":
        base_config |= groot_options or {}
    base = make_base_policy(base_name, num_envs=1, **base_config)
    return ResidualPolicy(base, ResidualActor(checkpoint).residual_mean, checkpoint["alpha"], name)


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
        randomization=scaled_randomization(args.randomization_scale),
    )
    start = time.perf_counter()
    records = []
    for i in range(args.n_episodes):
        frames = [] if video_dir and i < args.n_videos else None
        records.append(run_episode(env, policy, args.seed + i, frames))
        if frames:
            path = video_dir / f"{file_name(name)}_seed{args.seed + i}.mp4"
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


def file_name(policy_name: str) -> str:
    """A policy name as a file name: the labels of several checkpoints hold slashes and spaces."""
    return re.sub(r"[^A-Za-z0-9+._-]+", "_", policy_name).strip("_")


def print_table(summaries: list[dict]) -> None:
    width = max(22, 2 + max(len(s["policy"]) for s in summaries))  # checkpoint labels can be long
    header = f"{'policy':<{width}}{'success':>9}{'95% CI':>16}{'reward':>10}{'final dist (m)':>16}{'length':>9}"
    print(header)
    print("-" * len(header))
    for s in summaries:
        low, high = s["success_rate_ci95"]
        print(
            f"{s['policy']:<{width}}{s['success_rate']:>9.1%}{f'[{low:.1%}, {high:.1%}]':>16}"
            f"{s['mean_reward']:>10.2f}{s['mean_final_distance']:>16.4f}{s['mean_episode_length']:>9.1f}"
        )


# ---------------------------------------------------------------------- several checkpoints
def checkpoint_labels(paths: list[str]) -> list[str]:
    """Short distinct names of checkpoints: the fewest trailing path parts that tell them apart
    (runs/a/checkpoints/final.pt and runs/b/checkpoints/final.pt -> a/checkpoints/final.pt, b/...)."""
    parts = [pathlib.PurePath(path).parts for path in paths]
    for depth in range(1, max((len(p) for p in parts), default=0) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return list(paths)


def checkpoint_aggregate(summaries: list[dict]) -> dict:
    """The statistics over checkpoints (one per training seed) of their success rates, for JSON."""
    rates = [s["success_rate"] for s in summaries]
    return {"metric": "success_rate", "checkpoints": [s["model_path"] for s in summaries],
            "success_rates": rates, **aggregate(rates, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED)}


def versus_base(residual: dict, base: dict) -> dict:
    """The residual's success rate minus its base's, episode by episode on the same episodes."""
    return paired_difference([e["success"] for e in residual["episodes"]], [e["success"] for e in base["episodes"]],
                             BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED)


def print_versus_base(name: str, base_name: str, result: dict) -> None:
    low, high = result["difference_ci95"]
    print(f"{name} - {base_name}: {100 * result['difference']:+.1f} points, 95% CI [{100 * low:+.1f}, {100 * high:+.1f}] "
          f"(paired bootstrap over the {result['n_episodes']} episodes; the residual alone succeeds in {result['gained']}, "
          f"the base alone in {result['lost']})")


def print_aggregate(result: dict) -> None:
    low, high = result["iqm_ci95"]
    print(f"\nover {result['n_runs']} checkpoints (success rate; IQM = mean of the middle 50 % with fractional weights at "
          f"the quartiles; 95 % percentile bootstrap over checkpoints, {result['bootstrap']['resamples']} resamples, "
          f"seed {result['bootstrap']['seed']}):")
    print(f"  IQM {result['iqm']:.1%}   95% CI [{low:.1%}, {high:.1%}]   min {result['min']:.1%}   mean {result['mean']:.1%}")


def plot_summaries(summaries: list[dict], path: pathlib.Path) -> None:
    """Success rates with 95 % intervals, and the distribution of final paper-to-goal distances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Several checkpoints: "residual+jacobian run/checkpoints/final.pt" on a line per part, so that the labels fit.
    names = [s["policy"].replace(" ", "\n", 1).replace("/", "/\n") for s in summaries]
    rates = np.array([s["success_rate"] for s in summaries])
    ci = np.array([s["success_rate_ci95"] for s in summaries])
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(11, 2.4 * len(names)), 4.2))
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


def checkpoint_paths(args: Args) -> list[str]:
    paths = ([args.model_path] if args.model_path else []) + list(args.model_paths or [])
    resolved = [pathlib.Path(path).resolve() for path in paths]  # ./a.pt and a.pt are one file
    repeated = sorted({path for path, real in zip(paths, resolved) if resolved.count(real) > 1})
    if repeated:
        raise ValueError(f"checkpoint(s) {repeated} named twice: each would count twice in the aggregate over checkpoints")
    return paths


def policies_to_evaluate(args: Args) -> list[tuple[str, Callable[[], object], str | None, str | None]]:
    """(name, a function that returns the policy, checkpoint path or None, the name of the row of a
    checkpoint's base alone or None) in the order of the table:
    the residual checkpoints, their distinct bases (--compare-base), the base alone (--base-policy
    without checkpoints), zero.

    Every checkpoint is read and checked here, so a wrong one stops the run before any episode; its
    policy (and its base, maybe a large model) is built only when its turn comes. Each residual gets
    a base of its own, so its row is what an evaluation of that checkpoint alone gives."""
    policies = []
    paths = checkpoint_paths(args)
    loaded = [load_checkpoint(path, args.base_policy) for path in paths]
    configs = [json.dumps(checkpoint["base_config"], sort_keys=True, default=str) for checkpoint in loaded]
    bases = {}  # base config -> the base of the first residual with that config, for --compare-base
    base_rows = {}  # base config -> the name of its row, with --compare-base
    if args.compare_base and paths:
        distinct = list(dict.fromkeys(configs))
        kinds = [json.loads(config)["name"] for config in distinct]
        for index, (config, kind) in enumerate(zip(distinct, kinds)):
            # Distinct bases of one kind (il on two BC checkpoints) are numbered to tell them apart.
            base_rows[config] = kind if kinds.count(kind) == 1 else f"{kind} ({kinds[:index + 1].count(kind)})"
    for path, label, checkpoint, config in zip(paths, checkpoint_labels(paths), loaded, configs):
        # One checkpoint keeps the plain name it always had; several get their path as a label.
        name = None if len(paths) == 1 else f"residual+{checkpoint['base_config']['name']} {label}"

        def build(checkpoint=checkpoint, name=name, config=config):
            residual = residual_from_loaded(checkpoint, groot_overrides(args), name)
            bases.setdefault(config, residual.base)
            return residual

        policies.append((name or f"residual+{checkpoint['base_config']['name']}", build, path, base_rows.get(config)))
    for config, name in base_rows.items():
        policies.append((name, lambda config=config: bases[config], None, None))
    if args.base_policy and not paths:
        kwargs = base_policy_kwargs(args.base_policy, args.il_checkpoint, args.hybrid_spec)
        if args.base_policy == "groot":
            kwargs |= groot_overrides(args)
        base = make_base_policy(args.base_policy, num_envs=1, **kwargs)
        policies.append((args.base_policy, lambda: base, None, None))
    if args.compare_zero:
        zero = make_base_policy("zero", num_envs=1)
        policies.append(("zero", lambda: zero, None, None))
    return policies


# ---------------------------------------------------------------------- --aggregate-json
def checkpoint_results(path: str) -> tuple[list[dict], dict]:
    """The per-checkpoint summaries of an --output-json file of this script, and how they were
    evaluated: (summaries, {"reset seeds", "randomization_scale", "tape_half_size"}).

    A checkpoint's summary carries its "model_path". Files written before several checkpoints were
    supported have it only at the top level, for their first policy (the residual: it comes first)."""
    try:
        data = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {path}: {error}") from error
    if not isinstance(data, dict) or not ("policies" in data or "policy" in data):
        raise ValueError(f"{path} is not an --output-json file of eval_policy.py")
    summaries = data["policies"] if "policies" in data else [data]
    found = [s for s in summaries if s.get("model_path")]
    if not found and data.get("model_path") and summaries[0]["policy"].startswith("residual+"):
        found = [dict(summaries[0], model_path=data["model_path"])]
    if not found:
        raise ValueError(f"{path} holds no evaluation of a residual checkpoint (only {[s['policy'] for s in summaries]})")
    settings = {"randomization_scale": data.get("randomization_scale", 1.0),  # files from before the option: 1
                "tape_half_size": data.get("tape_half_size")}  # unknown in older files
    return found, settings


def aggregate_files(paths: list[str]) -> tuple[list[dict], dict]:
    """The checkpoint summaries of several --output-json files, checked to come from the same episodes
    (reset seeds, randomization scale, square size) and to name each checkpoint once; and their
    shared settings."""
    summaries, first = [], None
    for path in paths:
        found, settings = checkpoint_results(path)
        for summary in found:
            episodes = [e["seed"] for e in summary["episodes"]]
            consecutive = episodes == list(range(episodes[0], episodes[0] + len(episodes)))
            setting = {**settings, "reset seeds": f"{episodes[0]}..{episodes[-1]}" if consecutive else episodes}
            if first is None:
                first = (path, setting)
            for key, value in setting.items():
                other = first[1][key]
                if value != other and value is not None and other is not None:
                    raise ValueError(
                        f"{path} evaluated {summary['model_path']} with {key} {value}, {first[0]} with {other}: "
                        f"aggregate only evaluations of the same episodes (same --seed, --n-episodes, "
                        f"--randomization-scale, --tape-half-size)")
            if any(s["model_path"] == summary["model_path"] for s in summaries):
                raise ValueError(f"checkpoint {summary['model_path']} appears twice (again in {path}); "
                                 f"it would count twice in the aggregate over checkpoints")
            summaries.append(summary)
    if len(summaries) < 2:
        raise ValueError(f"found {len(summaries)} checkpoint evaluation in {paths}; an aggregate over checkpoints needs at least two")
    return summaries, first[1]


# ---------------------------------------------------------------------- main
def check_args(args: Args) -> None:
    problems = option_problems(args, at_least=dict(n_episodes=1, torch_threads=1, n_videos=0, video_size=16,
                                                   tape_half_size=0.02, groot_chunk_steps=1, groot_port=0),
                               above=dict(groot_timeout=0.0, randomization_scale=0.0),
                               at_most=dict(tape_half_size=0.3, groot_port=65535,
                                            randomization_scale=MAX_RANDOMIZATION_SCALE))
    if not problems:  # a scale outside its bounds has been named already
        problems += randomization_problems(args.randomization_scale)
    if args.groot_noise is not None and args.groot_noise not in NOISE_MODES:
        problems.append(f"--groot-noise {args.groot_noise!r} is unknown; choose one of {list(NOISE_MODES)}")
    if problems:
        raise SystemExit("invalid arguments:\n  " + "\n  ".join(problems))
    if args.aggregate_json is not None:
        evaluating = [flag for flag, given in (("--model-path", args.model_path), ("--model-paths", args.model_paths),
                                               ("--base-policy", args.base_policy), ("--compare-base", args.compare_base),
                                               ("--compare-zero", args.compare_zero), ("--save-video", args.save_video)) if given]
        if evaluating:
            raise SystemExit(f"--aggregate-json combines earlier results and runs no episodes: drop {', '.join(evaluating)}")
        return
    if args.base_policy is not None and args.base_policy not in BASE_POLICIES:
        raise SystemExit(f"unknown --base-policy {args.base_policy!r}; choose one of {sorted(BASE_POLICIES)}")
    if args.base_policy is None and args.model_path is None and not args.model_paths:
        raise SystemExit("name something to evaluate: --base-policy NAME and/or --model-path CHECKPOINT "
                         "(or --model-paths CHECKPOINT ...)")


def write_outputs(args: Args, summaries: list[dict], result: dict) -> None:
    out_dir = pathlib.Path(args.output_json).parent if args.output_json else pathlib.Path("runs/eval")
    if args.output_json:
        path = pathlib.Path(args.output_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2))
        print(f"wrote {path}")
    if args.plot:
        stem = pathlib.Path(args.output_json).stem if args.output_json else "eval"
        plot_summaries(summaries, out_dir / f"{stem}.png")
        print(f"wrote {out_dir / f'{stem}.png'}")


def main(args: Args) -> list[dict]:
    check_args(args)
    if args.aggregate_json is not None:
        try:
            summaries, settings = aggregate_files(args.aggregate_json)
        except (KeyError, ValueError) as error:
            raise SystemExit(f"cannot aggregate: {error}") from error
        print_table(summaries)
        result = checkpoint_aggregate(summaries)
        print_aggregate(result)
        episodes = summaries[0]["episodes"]
        write_outputs(args, summaries, {
            "aggregated_from": args.aggregate_json, "seed": episodes[0]["seed"], "n_episodes": len(episodes),
            "tape_half_size": settings["tape_half_size"], "randomization_scale": settings["randomization_scale"],
            "policies": summaries, "aggregate": result})
        return summaries

    torch.set_num_threads(args.torch_threads)
    errors = (FileNotFoundError, ValueError, TimeoutError, ConnectionError)
    try:
        policies = policies_to_evaluate(args)
    except errors as error:
        raise SystemExit(f"cannot evaluate: {error}") from error
    randomization = scaled_randomization(args.randomization_scale)
    if args.randomization_scale != 1.0:
        print(f"randomization x{args.randomization_scale:g}: {describe_randomization(randomization)}")

    out_dir = pathlib.Path(args.output_json).parent if args.output_json else pathlib.Path("runs/eval")
    video_dir = out_dir / "videos" if args.save_video else None
    summaries = []
    for name, build, model_path, _ in policies:
        try:
            policy = build()  # a checkpoint's residual and base are built when its turn comes
        except errors as error:
            raise SystemExit(f"cannot evaluate: {error}" + (f" (checkpoint {model_path})" if model_path else "")) from error
        summary = evaluate(name, policy, args, video_dir)
        if model_path is not None:
            summary = {"policy": name, "model_path": model_path, **summary}
        summaries.append(summary)
    print_table(summaries)
    rows = {s["policy"]: s for s in summaries}
    for (name, _, _, base_row), summary in zip(policies, summaries):
        if base_row is not None:
            summary["versus_base"] = versus_base(summary, rows[base_row])
            print_versus_base(name, base_row, summary["versus_base"])
    checkpoints = [s for s in summaries if "model_path" in s]
    paths = [s["model_path"] for s in checkpoints]
    result = {"seed": args.seed, "model_path": paths[0] if len(paths) == 1 else None, "model_paths": paths,
              "n_episodes": args.n_episodes, "tape_half_size": args.tape_half_size,
              "randomization_scale": args.randomization_scale, "randomization": dataclasses.asdict(randomization)}
    result |= summaries[0] if len(summaries) == 1 else {"policies": summaries}
    if len(checkpoints) >= 2:
        result["aggregate"] = checkpoint_aggregate(checkpoints)
        print_aggregate(result["aggregate"])
    write_outputs(args, summaries, result)
    return summaries


if __name__ == "__main__":
    main(tyro.cli(Args))

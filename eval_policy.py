"""Evaluate base policies and residual checkpoints on seeded episodes of SO101PaperSquare-v0.

    python eval_policy.py --base-policy jacobian --n-episodes 100 --seed 0 --output-json runs/eval.json
    python eval_policy.py --base-policy groot --n-episodes 20    # the small sim GR00T in checkpoints/, CPU, offline
    python eval_policy.py --model-path runs/<run>/checkpoints/best.pt --compare-base --compare-zero \
        --n-episodes 100 --plot --save-video --output-json runs/eval/residual.json
    python eval_policy.py --model-paths runs/seed1/checkpoints/final.pt runs/seed2/checkpoints/final.pt \
        runs/seed3/checkpoints/final.pt --compare-base --n-episodes 100 --output-json runs/eval/seeds.json
    python eval_policy.py --aggregate-json runs/eval/seed1.json runs/eval/seed2.json runs/eval/seed3.json
    python eval_policy.py --aggregate-json runs/eval/base.json runs/eval/seed*.json    # each paired with the base
    python eval_policy.py --model-path checkpoints/residual_jacobian_seed1.pt --randomization-scale 2

Episode i uses reset seed `seed + i`, so every policy meets the same papers. Prints the success
rate with a 95 % Wilson interval, mean episode reward, mean final paper-to-goal distance and
mean episode length; optionally writes JSON, PNG charts and dual-camera MP4s.

Several checkpoints (one per training seed) are also summarized over seeds, as Agarwal et al.
(2021) recommend: the interquartile mean of their success rates with a percentile bootstrap 95 %
interval over checkpoints, the minimum and the mean (seed_statistics.py). `--aggregate-json`
computes the same from earlier JSON outputs, without running episodes, and pairs each checkpoint with
its base's row where one of the files holds it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import tyro

import so101_env
from base_policies import base_policy_kwargs, make_base_policy
from episodes import EpisodeRecord, run_episode
from groot_base import GrootOptions  # importing it registers the groot base
from checkpoint_io import load_actor_program, load_checkpoint, load_noise_program
from residual_policy import residual_from_loaded, stored_base_kwargs
from command_line import MAX_SEED, MAX_TORCH_THREADS, BadInput, device_problems, option_problems, refuse
from output_files import output_problems, write_atomically
from seed_statistics import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, aggregate, paired_difference
from so101_env import (MAX_IMAGE_SIZE, MAX_RANDOMIZATION_SCALE, SO101PaperSquareEnv, describe_randomization,
                       randomization_problems, scaled_randomization)
from videos import write_mp4


@dataclass
class Args:
    base_policy: Literal["zero", "jacobian", "il", "hybrid", "groot"] | None = None
    """base policy to evaluate alone; with --model-path it must match the checkpoint's base"""
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
    checkpoint or several each) over checkpoints; they must come from the same episodes. A base's row in any
    of them (--compare-base, or a file of --base-policy alone) pairs each checkpoint on that base with it"""
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
    """pixel size of each camera view in the videos (16 to 480); vision bases see the cameras at this size too"""
    overwrite: bool = False
    """replace files that --output-json, --plot and --save-video would write where files exist already; without
    it such a run is refused before any episode"""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    """torch device of a local GR00T model"""
    groot: GrootOptions = field(default_factory=GrootOptions.unset)
    """the groot base: with --base-policy groot, each option not given takes its default; under a residual checkpoint,
    the setting it was trained with, except a server or a checkpoint to download, which are used only when named here"""


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


def evaluate(name: str, policy, args: Args) -> dict:
    env = SO101PaperSquareEnv(
        tape_half_size=args.tape_half_size,
        act_scale=policy.act_scale,
        render_mode="rgb_array" if args.save_video else None,
        image_size=args.video_size,
        randomization=scaled_randomization(args.randomization_scale),
    )
    start = time.perf_counter()
    records = []
    for i in range(args.n_episodes):
        frames = [] if args.save_video and i < args.n_videos else None
        records.append(run_episode(env, policy, args.seed + i, frames))
        if frames:
            path = video_path(args, name, args.seed + i)
            write_output(path, lambda: write_mp4(frames, path, so101_env.POLICY_HZ, args.overwrite))
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


# ---------------------------------------------------------------------- output files
def output_dir(args: Args) -> pathlib.Path:
    return pathlib.Path(args.output_json).parent if args.output_json else pathlib.Path("runs/eval")


def plot_path(args: Args) -> pathlib.Path:
    return output_dir(args) / f"{pathlib.Path(args.output_json).stem if args.output_json else 'eval'}.png"


def video_path(args: Args, policy_name: str, seed: int) -> pathlib.Path:
    return output_dir(args) / "videos" / f"{file_name(policy_name)}_seed{seed}.mp4"


def check_outputs(args: Args, policy_names: list[str] = ()) -> None:
    """Refuse, before any episode, a run whose JSON, chart or videos (those of `policy_names`) would replace a
    file it did not write (without --overwrite), or one of its own inputs (always)."""
    outputs = [("--output-json", args.output_json)] if args.output_json else []
    outputs += [("--plot", plot_path(args))] if args.plot else []
    outputs += [("--save-video", video_path(args, name, args.seed + i)) for name in policy_names if args.save_video
                for i in range(min(args.n_videos, args.n_episodes))]
    inputs = [args.model_path, *(args.model_paths or []), *(args.aggregate_json or []), args.il_checkpoint]
    refuse(output_problems(outputs, args.overwrite, [path for path in inputs if path]))


def write_output(path: pathlib.Path, write: Callable[[], None]) -> None:
    """`write()` the file at `path`; a failure (a full disk, a file that appeared meanwhile) ends the run in one line."""
    try:
        write()
    except OSError as error:
        raise SystemExit(f"error: cannot write {path}: {error}") from None
    print(f"wrote {path}")


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
          f"the base alone in {result['lost']} of its {result['base_successes']})")


def print_aggregate(result: dict) -> None:
    low, high = result["iqm_ci95"]
    print(f"\nover {result['n_runs']} checkpoints (success rate; IQM = mean of the middle 50 % with fractional weights at "
          f"the quartiles; 95 % percentile bootstrap over checkpoints, {result['bootstrap']['resamples']} resamples, "
          f"seed {result['bootstrap']['seed']}):")
    print(f"  IQM {result['iqm']:.1%}   95% CI [{low:.1%}, {high:.1%}]   min {result['min']:.1%}   mean {result['mean']:.1%}")


def plot_summaries(summaries: list[dict], path: pathlib.Path, overwrite: bool) -> None:
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
    write_atomically(path, lambda temporary: fig.savefig(temporary, dpi=120), overwrite)
    plt.close(fig)


def checkpoint_paths(args: Args) -> list[str]:
    paths = ([args.model_path] if args.model_path else []) + list(args.model_paths or [])
    resolved = [pathlib.Path(path).resolve() for path in paths]  # ./a.pt and a.pt are one file
    repeated = sorted({path for path, real in zip(paths, resolved) if resolved.count(real) > 1})
    if repeated:
        raise ValueError(f"checkpoint(s) {repeated} named twice: each would count twice in the aggregate over checkpoints")
    return paths


def policy_kind(checkpoint: dict) -> str:
    """A checkpoint's row name: "residual+<base>", or for one that steers GR00T's flow (ppo_noise_groot.py)
    "steering+groot", with "+residual" when its action residual is on (alpha > 0)."""
    base = checkpoint["base_config"]["name"]
    if "noise_program" not in checkpoint:
        return f"residual+{base}"
    return f"steering+residual+{base}" if checkpoint["alpha"] > 0 else f"steering+{base}"


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
    actors = [load_actor_program(checkpoint, path) for checkpoint, path in zip(loaded, paths)]
    flow_starts = [load_noise_program(checkpoint, path) for checkpoint, path in zip(loaded, paths)]
    base_kwargs = []
    for checkpoint, path in zip(loaded, paths):
        try:
            base_kwargs.append(stored_base_kwargs(checkpoint["base_config"], args.groot, args.device, args.seed))
        except ValueError as error:
            raise ValueError(f"checkpoint {path}: {error}") from None
    configs = [json.dumps(checkpoint["base_config"], sort_keys=True, default=str) for checkpoint in loaded]
    bases = {}  # base config -> the base of the first residual with that config, for --compare-base
    base_rows = {}  # base config -> the name of its row, with --compare-base
    if args.compare_base and paths:
        distinct = list(dict.fromkeys(configs))
        kinds = [json.loads(config)["name"] for config in distinct]
        for index, (config, kind) in enumerate(zip(distinct, kinds)):
            # Distinct bases of one kind (il on two BC checkpoints) are numbered to tell them apart.
            base_rows[config] = kind if kinds.count(kind) == 1 else f"{kind} ({kinds[:index + 1].count(kind)})"
    for path, label, checkpoint, actor, flow_start, kwargs, config in zip(paths, checkpoint_labels(paths), loaded, actors,
                                                                           flow_starts, base_kwargs, configs):
        # One checkpoint keeps the plain name it always had; several get their path as a label.
        kind = policy_kind(checkpoint)
        name = None if len(paths) == 1 else f"{kind} {label}"

        def build(checkpoint=checkpoint, actor=actor, flow_start=flow_start, kwargs=kwargs, name=name, config=config):
            residual = residual_from_loaded(checkpoint, actor, kwargs, name, flow_start)
            bases.setdefault(config, residual.base)
            return residual

        policies.append((name or kind, build, path, base_rows.get(config)))
    for config, name in base_rows.items():
        policies.append((name, lambda config=config: bases[config], None, None))
    if args.base_policy and not paths:
        kwargs = base_policy_kwargs(args.base_policy, args.il_checkpoint, args.hybrid_spec)
        if args.base_policy == "groot":
            kwargs |= args.groot.base_kwargs() | {"device": args.device, "seed": args.seed}
        base = make_base_policy(args.base_policy, num_envs=1, **kwargs)
        policies.append((args.base_policy, lambda: base, None, None))
    if args.compare_zero:
        zero = make_base_policy("zero", num_envs=1)
        policies.append(("zero", lambda: zero, None, None))
    return policies


# ---------------------------------------------------------------------- --aggregate-json
BASE_FIELDS = {"policy": str, "success_rate": (int, float), "success_rate_ci95": list, "mean_reward": (int, float),
               "mean_final_distance": (int, float), "mean_episode_length": (int, float), "episodes": list}
SUMMARY_FIELDS = BASE_FIELDS | {"model_path": str}
EPISODE_FIELDS = {"seed": int, "success": bool, "final_distance": (int, float)}
"""What an aggregate reads of a checkpoint's summary (a base's: the same but its path) and of each of its
episodes, with their JSON types."""


def summary_problem(summary: dict, fields: dict = SUMMARY_FIELDS) -> str | None:
    """What makes a checkpoint's summary (or with BASE_FIELDS a base's) from an --output-json file unusable in an
    aggregate, or None."""
    wrong = [name for name, kind in fields.items() if not isinstance(summary.get(name), kind)]
    if wrong:
        return f"a {'checkpoint' if 'model_path' in fields else 'base'}'s summary lacks {', '.join(wrong)} or holds another type there"
    if not 0 <= summary["success_rate"] <= 1:
        return f"success_rate {summary['success_rate']} is not within [0, 1]"
    interval = summary["success_rate_ci95"]
    if len(interval) != 2 or not all(isinstance(bound, (int, float)) for bound in interval):
        return f"success_rate_ci95 {interval} is not two numbers"
    episodes = summary["episodes"]
    if not episodes or not all(isinstance(episode, dict) and all(isinstance(episode.get(name), kind)
                                                                 for name, kind in EPISODE_FIELDS.items())
                               for episode in episodes):
        return f"its episodes are missing, or lack an integer seed, a true/false success or a final_distance"
    return None


def checkpoint_results(path: str) -> tuple[list[dict], list[dict], dict]:
    """The per-checkpoint summaries of an --output-json file of this script, those of the base policies
    evaluated alone (their names have no "+"), and how they were evaluated: (checkpoints, bases,
    {"randomization_scale", "tape_half_size"}).

    A checkpoint's summary carries its "model_path". Files written before several checkpoints were
    supported have it only at the top level, for their first policy (the residual: it comes first)."""
    try:
        data = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {path}: {error}") from error
    if not isinstance(data, dict) or not ("policies" in data or "policy" in data):
        raise ValueError(f"{path} is not an --output-json file of eval_policy.py")
    summaries = data["policies"] if "policies" in data else [data]
    if not isinstance(summaries, list) or not all(isinstance(s, dict) for s in summaries):
        raise ValueError(f"{path}: its policies are not a list of summaries; give the files that --output-json wrote")
    found = [s for s in summaries if s.get("model_path")]
    if not found and data.get("model_path") and summaries and str(summaries[0].get("policy")).startswith("residual+"):
        found = [dict(summaries[0], model_path=data["model_path"])]
    bases = [s for s in summaries if not s.get("model_path") and "+" not in str(s.get("policy"))]
    if not found and not bases:
        raise ValueError(f"{path} holds no evaluation of a residual checkpoint or a base "
                         f"(only {[s.get('policy') for s in summaries]})")
    for summary, fields in [(s, SUMMARY_FIELDS) for s in found] + [(s, BASE_FIELDS) for s in bases]:
        problem = summary_problem(summary, fields)
        if problem:
            raise ValueError(f"{path}: {problem}; give the files that --output-json wrote")
    settings = {"randomization_scale": data.get("randomization_scale", 1.0),  # files from before the option: 1
                "tape_half_size": data.get("tape_half_size")}  # unknown in older files
    return found, bases, settings


def aggregate_files(paths: list[str]) -> tuple[list[dict], dict[str, dict], dict]:
    """The checkpoint summaries of several --output-json files, checked to come from the same episodes
    (reset seeds, randomization scale, square size) and to name each checkpoint once; the base rows
    among them by name (rows of one name must agree episode by episode: the same base); and their
    shared settings."""
    summaries, bases, first = [], {}, None
    for path in paths:
        found, base_rows, settings = checkpoint_results(path)
        for summary, is_base in [(s, False) for s in found] + [(s, True) for s in base_rows]:
            episodes = [e["seed"] for e in summary["episodes"]]
            consecutive = episodes == list(range(episodes[0], episodes[0] + len(episodes)))
            setting = {**settings, "reset seeds": f"{episodes[0]}..{episodes[-1]}" if consecutive else episodes}
            if first is None:
                first = (path, setting)
            for key, value in setting.items():
                other = first[1][key]
                if value != other and value is not None and other is not None:
                    raise ValueError(
                        f"{path} evaluated {summary.get('model_path') or summary['policy']} with {key} {value}, "
                        f"{first[0]} with {other}: "
                        f"aggregate only evaluations of the same episodes (same --seed, --n-episodes, "
                        f"--randomization-scale, --tape-half-size)")
            if is_base:
                name, earlier = summary["policy"], bases.get(summary["policy"])
                successes = [e["success"] for e in summary["episodes"]]
                if earlier is not None and [e["success"] for e in earlier["episodes"]] != successes:
                    raise ValueError(f"the {name!r} rows of {earlier['file']} and {path} differ on the same episodes: "
                                     f"they are not one base (a random base? another checkpoint?); give one of them")
                bases.setdefault(name, {**summary, "file": path})
                continue
            if any(s["model_path"] == summary["model_path"] for s in summaries):
                raise ValueError(f"checkpoint {summary['model_path']} appears twice (again in {path}); "
                                 f"it would count twice in the aggregate over checkpoints")
            summaries.append(summary)
    if len(summaries) < (1 if bases else 2):
        raise ValueError(f"found {len(summaries)} checkpoint evaluation in {paths}; an aggregate over checkpoints needs "
                         f"at least two, or one and its base")
    return summaries, bases, first[1]


# ---------------------------------------------------------------------- main
def check_args(args: Args) -> None:
    """Every option checked before anything is loaded: one line per problem, exit status 2."""
    problems = option_problems(args, within=dict(n_episodes=(1, 100_000), seed=(0, MAX_SEED), tape_half_size=(0.02, 0.3),
                                                 torch_threads=(1, MAX_TORCH_THREADS), n_videos=(0, 1000),
                                                 video_size=(16, MAX_IMAGE_SIZE)),
                               above=dict(randomization_scale=0.0), at_most=dict(randomization_scale=MAX_RANDOMIZATION_SCALE))
    if not problems:  # a scale outside its bounds has been named already
        problems += randomization_problems(args.randomization_scale)
    refuse(problems + args.groot.problems() + device_problems(args.device))
    check_outputs(args)  # the JSON and the chart; the videos once the policies' names are known
    if args.aggregate_json is not None:
        evaluating = [flag for flag, given in (("--model-path", args.model_path), ("--model-paths", args.model_paths),
                                               ("--base-policy", args.base_policy), ("--compare-base", args.compare_base),
                                               ("--compare-zero", args.compare_zero), ("--save-video", args.save_video)) if given]
        if evaluating:
            raise BadInput(f"--aggregate-json combines earlier results and runs no episodes: drop {', '.join(evaluating)}")
        return
    if args.base_policy is None and args.model_path is None and not args.model_paths:
        raise BadInput("name something to evaluate: --base-policy NAME and/or --model-path CHECKPOINT "
                       "(or --model-paths CHECKPOINT ...)")
    if args.base_policy == "groot" and args.model_path is None and not args.model_paths:
        args.groot.check_checkpoint()


def cannot_evaluate(error: Exception, model_path: str | None = None) -> SystemExit:
    """How a policy that cannot be built ends the run: a missing or wrong file is bad input (exit status 2),
    an unreachable GR00T server is not (1)."""
    message = f"cannot evaluate: {error}" + (f" (checkpoint {model_path})" if model_path else "")
    return BadInput(message) if isinstance(error, (FileNotFoundError, ValueError)) else SystemExit(message)


def write_outputs(args: Args, summaries: list[dict], result: dict) -> None:
    if args.output_json:
        text = json.dumps(result, indent=2)
        write_output(args.output_json, lambda: write_atomically(
            args.output_json, lambda temporary: temporary.write_text(text), args.overwrite))
    if args.plot:
        write_output(plot_path(args), lambda: plot_summaries(summaries, plot_path(args), args.overwrite))


def main(args: Args) -> list[dict]:
    check_args(args)
    if args.aggregate_json is not None:
        try:
            summaries, bases, settings = aggregate_files(args.aggregate_json)
        except (KeyError, ValueError) as error:
            raise BadInput(f"cannot aggregate: {error}") from None
        kinds = [s["policy"].split(" ")[0] for s in summaries]  # "residual+groot", "steering+residual+groot", ...
        if len(summaries) >= 2:  # each file named its one checkpoint by its kind alone: tell them apart by path
            for summary, kind, label in zip(summaries, kinds, checkpoint_labels([s["model_path"] for s in summaries])):
                summary["policy"] = f"{kind} {label}"
        print_table(summaries + list(bases.values()))
        for summary, kind in zip(summaries, kinds):  # the base's row is named as the kind's last part, "groot"
            base = bases.get(kind.split("+")[-1])
            if base is not None:
                summary["versus_base"] = versus_base(summary, base)
                print_versus_base(summary["policy"], base["policy"], summary["versus_base"])
        result = {"aggregated_from": args.aggregate_json, "seed": summaries[0]["episodes"][0]["seed"],
                  "n_episodes": len(summaries[0]["episodes"]), "tape_half_size": settings["tape_half_size"],
                  "randomization_scale": settings["randomization_scale"], "policies": summaries,
                  "bases": list(bases.values())}
        if len(summaries) >= 2:
            result["aggregate"] = checkpoint_aggregate(summaries)
            print_aggregate(result["aggregate"])
        write_outputs(args, summaries, result)
        return summaries

    torch.set_num_threads(args.torch_threads)
    errors = (FileNotFoundError, ValueError, TimeoutError, ConnectionError)
    try:
        policies = policies_to_evaluate(args)
    except errors as error:
        raise cannot_evaluate(error) from None
    randomization = scaled_randomization(args.randomization_scale)
    if args.randomization_scale != 1.0:
        print(f"randomization x{args.randomization_scale:g}: {describe_randomization(randomization)}")

    check_outputs(args, [name for name, *_ in policies])
    summaries = []
    for name, build, model_path, _ in policies:
        try:
            policy = build()  # a checkpoint's residual and base are built when its turn comes
        except errors as error:
            raise cannot_evaluate(error, model_path) from None
        summary = evaluate(name, policy, args)
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

"""Record demonstrations of a base policy in the sim as a LeRobot dataset (layout: lerobot_dataset.py).

    python record_demos.py --n-episodes 200 --output-dir runs/demos/jacobian
    python record_demos.py --dart-noise-std 0.0 --output-dir runs/demos/jacobian_clean
    python record_demos.py --base-policy il --il-checkpoint runs/<run>/checkpoints/bc.pt --output-dir runs/demos/il
    python record_demos.py --cameras --n-episodes 200 --output-dir runs/demos/jacobian_cameras   # + top_view, wrist videos
    python record_demos.py --cameras --dataset-version v3.0 --output-dir runs/demos/jacobian_v3  # for LeRobot >= 0.4

Attempt j is reset with seed `seed + j`; by default only successful episodes are kept, until
`--n-episodes` of them are recorded. The default seeds start at 100000, away from the seeds
eval_policy.py uses (0, 1, ...), so a policy cloned from these demos is evaluated on new papers.

The dataset is written beside `--output-dir` (`<dir>.tmp-<pid>-<random>`) and moved into place
once complete with at least one episode; the exit status is non-zero when none was kept. The
output directory may be new or empty; one that holds a LeRobot dataset is replaced only with
`--overwrite`, and only after the new one is complete (a failed or interrupted recording leaves it
as it was); any other non-empty directory is refused. Nothing the program did not write is deleted
but the dataset `--overwrite` replaces. Ctrl-C or SIGTERM keeps the episodes recorded so far when
nothing is being replaced (and leaves the old dataset when one is), says which, and exits 130 or 143.
The output directory must not be a mount point: the staging directory beside it would be on another
filesystem, so that is refused before recording (write into a new directory inside it).

DART-style noise (`--dart-noise-std`): Gaussian noise is added to the action the env executes,
while the dataset keeps the demonstrator's own action as the label. The demonstrator then
shows how it recovers from the small deviations a cloned policy will make. It is on by default
(0.1): a policy cloned from noise-free Jacobian demos succeeded as often on clean episodes but
failed every episode once a residual's exploration noise (std 0.07) was added to its actions.

Cameras (`--cameras`): the top_view and wrist cameras are rendered at every step, at
`--image-size` (224, what the GR00T N1.5 base is fed), and stored as LeRobot video features
`observation.images.top_view` / `observation.images.wrist` (one H.264 MP4 per episode and camera,
frame i = parquet row i), making the dataset LeRobot v2.1 with meta/episodes_stats.jsonl and
Isaac-GR00T's meta/modality.json, so NVIDIA's fine-tuning scripts read it too, with the stock
`--data-config so100_dualcam` (modality.json names top_view `front`, as that config does; the
layout and what Isaac's loader needs are in lerobot_dataset.py). Each attempt then prints a line with the recording rate. Off by default: without
it nothing is rendered and the dataset is the state-only v2.0 one.

Dataset version (`--dataset-version`): v2.1 (the default; v2.0 without cameras) is what Isaac-GR00T N1.5
and LeRobot <= 0.3 read; v3.0 is what LeRobot >= 0.4 reads (episodes merged into files, LeRobot's own
metadata), with modality.json and the joint units in files LeRobot leaves alone. train_bc.py and
finetune_groot.py read both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import tyro

import groot_base  # noqa: F401  registers the groot base, so it can demonstrate too
from base_policies import BASE_POLICIES, base_policy_kwargs, camera_images, make_base_policy
from command_line import BadInput, option_problems
from lerobot_dataset import DatasetWriter
from so101_env import CAMERA_NAMES, MAX_IMAGE_SIZE, SO101PaperSquareEnv
from stop_signals import StopSignals


@dataclass
class Args:
    output_dir: str = "runs/demos/jacobian"
    """dataset directory to write (LeRobot v2.0 layout; v2.1 with videos under --cameras; or v3.0, see --dataset-version)"""
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
    units: Literal["radians", "degrees", "range"] = "degrees"
    """joint units of observation.state and action: radians, degrees (LeRobot's default), range ([-100, 100])"""
    dart_noise_std: float = 0.1
    """std of Gaussian noise added to the executed normalized action; the label stays clean"""
    act_scale: float = 0.02
    """radians of joint-target change per unit of normalized action"""
    tape_half_size: float = 0.08
    """inner half-size of the tape square in metres"""
    overwrite: bool = False
    """replace the LeRobot dataset already in --output-dir, once the new one is complete"""
    cameras: bool = False
    """also record the top_view and wrist cameras as LeRobot videos (observation.images.*), with GR00T's meta/modality.json"""
    image_size: int = 224
    """camera images are image_size x image_size pixels (even, 16 to 480; 224 is what the GR00T N1.5 base is fed)"""
    dataset_version: Literal["v2.1", "v3.0"] = "v2.1"
    """LeRobot layout: v2.1 (v2.0 without cameras; Isaac-GR00T N1.5 and LeRobot <= 0.3 read it) or v3.0 (LeRobot >= 0.4)"""


TAPE_HALF_SIZE_RANGE = (0.02, 0.3)
"""metres; the range SO101PaperSquareEnv accepts for tape_half_size"""


def validate_args(args: Args) -> None:
    """Refuse nonsense options with one message that names each of them."""
    low, high = TAPE_HALF_SIZE_RANGE
    problems = option_problems(
        args, at_least=dict(n_episodes=1, max_attempts=1, seed=0, image_size=16, dart_noise_std=0.0, tape_half_size=low),
        above=dict(act_scale=0.0),
        at_most=dict(seed=2**32 - 1, image_size=MAX_IMAGE_SIZE, dart_noise_std=1.0, act_scale=0.2, tape_half_size=high))
    if args.base_policy not in BASE_POLICIES:
        problems.append(f"unknown --base-policy {args.base_policy!r}; choose one of {sorted(BASE_POLICIES)}")
    if args.image_size % 2:
        problems.append(f"--image-size must be even (H.264 in yuv420p halves the colour resolution), got {args.image_size}")
    if problems:
        raise BadInput("invalid arguments:\n  " + "\n  ".join(problems))


def main(args: Args) -> DatasetWriter:
    """Record; returns the closed writer, whose `root` holds the new dataset. Exits non-zero
    (SystemExit) when no episode was kept, or when interrupted (130 for Ctrl-C, 143 for SIGTERM)."""
    validate_args(args)
    stop = StopSignals()  # SIGTERM (a `kill`, a scheduler) ends a recording as Ctrl-C does: nothing half-written stays
    torch.set_num_threads(1)  # an il demonstrator's small network runs fastest on one thread
    try:
        kwargs = base_policy_kwargs(args.base_policy, args.il_checkpoint, args.hybrid_spec)
        demonstrator = make_base_policy(args.base_policy, num_envs=1, act_scale=args.act_scale, **kwargs)
        provenance = {"demonstrator": demonstrator.config(), "dart_noise_std": args.dart_noise_std,
                      "seed": args.seed, "tape_half_size": args.tape_half_size}
        cameras = CAMERA_NAMES if args.cameras else ()
        writer = DatasetWriter(args.output_dir, args.units, args.act_scale, provenance, args.overwrite, cameras=cameras,
                               version=args.dataset_version)
    except (OSError, ValueError) as error:
        raise BadInput(f"cannot record: {error}") from None

    start = time.perf_counter()
    try:
        interrupted = record_episodes(args, demonstrator, writer)
        published = writer.close()
    except KeyboardInterrupt:  # while the dataset was being finished: it is either in place now, or discarded
        writer.discard()
        interrupted, published = True, writer.state == "published"
    except BaseException:
        writer.discard()  # what it wrote, only; --output-dir is left as it was
        raise
    old = "; the dataset already there is left as it was" if writer.replaces_dataset else ""
    if interrupted:
        print(f"interrupted: wrote the {len(writer.lengths)} episodes recorded so far to {args.output_dir}" if published
              else f"interrupted: nothing written to {args.output_dir}{old}", flush=True)
        raise SystemExit(stop.exit_status)
    if not published:
        raise SystemExit(
            f"kept 0 episodes in {max_attempts(args)} attempts (the demonstrator never succeeded"
            f"{'' if args.keep_failures else '; --keep-failures keeps failed episodes too'}): "
            f"nothing written to {args.output_dir}{old}"
        )
    videos = f", {len(writer.lengths) * len(writer.cameras)} videos" if writer.cameras else ""
    print(f"wrote {len(writer.lengths)} episodes ({sum(writer.lengths)} frames{videos}) to {args.output_dir} "
          f"in {time.perf_counter() - start:.0f} s{rate(writer, start) if writer.cameras else ''}")
    if len(writer.lengths) < args.n_episodes:
        print(f"warning: only {len(writer.lengths)} of the {args.n_episodes} episodes asked for were kept; "
              "raise --max-attempts for more")
    return writer


def max_attempts(args: Args) -> int:
    return 5 * args.n_episodes if args.max_attempts is None else args.max_attempts


def rate(writer: DatasetWriter, start: float) -> str:
    elapsed = max(time.perf_counter() - start, 1e-9)
    return f": {sum(writer.lengths) / elapsed:.1f} frames/s, {len(writer.lengths) / elapsed * 60:.1f} episodes/min"


def record_episodes(args: Args, demonstrator, writer: DatasetWriter) -> bool:
    """Run attempts until `args.n_episodes` are kept or the attempts run out; returns whether
    it was interrupted (Ctrl-C or SIGTERM). An interruption while the dataset replaces an existing one
    discards the recording here, so the old dataset stays."""
    env = SO101PaperSquareEnv(act_scale=args.act_scale, tape_half_size=args.tape_half_size, image_size=args.image_size)
    noise = np.random.default_rng(args.seed)
    attempt_limit = max_attempts(args)
    attempts, successes, start = 0, 0, time.perf_counter()
    try:
        while len(writer.lengths) < args.n_episodes and attempts < attempt_limit:
            obs, _ = env.reset(seed=args.seed + attempts)
            demonstrator.reset()
            states, actions, rewards = [], [], []
            frames = {camera: [] for camera in writer.cameras}
            done = False
            while not done:
                images = env.render_cameras() if writer.cameras else None  # rendered once per step
                for camera in writer.cameras:
                    frames[camera].append(images[camera])
                needed = camera_images(demonstrator, lambda: [images or env.render_cameras()])  # noqa: B023  called here
                action = demonstrator.act(obs[None], needed)[0]
                executed = action + noise.normal(0.0, args.dart_noise_std, action.shape) if args.dart_noise_std else action
                states.append(obs)
                actions.append(action)
                obs, reward, terminated, truncated, info = env.step(np.clip(executed, -1.0, 1.0))
                rewards.append(reward)
                done = terminated or truncated
            attempts += 1
            successes += bool(info["success"])
            kept = info["success"] or args.keep_failures
            if kept:
                writer.add_episode(np.array(states), np.array(actions), np.array(rewards), bool(info["success"]),
                                   images={camera: np.stack(f) for camera, f in frames.items()} or None)
            if writer.cameras:  # seconds per attempt: a line each, with the rate so far
                outcome = f"kept ({len(states)} frames)" if kept else "failed, not kept"
                print(
                    f"attempt {attempts}: {outcome}; {len(writer.lengths)}/{args.n_episodes} episodes, "
                    f"{sum(writer.lengths)} frames in {time.perf_counter() - start:.0f} s{rate(writer, start)}",
                    flush=True,
                )
            elif attempts % 10 == 0 or len(writer.lengths) == args.n_episodes:
                print(
                    f"attempt {attempts}: kept {len(writer.lengths)}/{args.n_episodes} episodes, "
                    f"{sum(writer.lengths)} frames, demonstrator success {successes / attempts:.0%}, "
                    f"{time.perf_counter() - start:.0f} s",
                    flush=True,
                )
    except KeyboardInterrupt:
        if writer.replaces_dataset:
            writer.discard()  # an unfinished recording never replaces a dataset
        print()
        return True
    finally:
        env.close()
    return False


if __name__ == "__main__":
    main(tyro.cli(Args))

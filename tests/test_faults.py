"""Faults: simulation blow-ups during training, interrupted checkpoint writes, nonsense input, output
paths that would replace files the program did not write."""

import dataclasses
import errno
import json
import math
import pathlib
import re
import shutil
import subprocess
import sys
import typing

import imageio.v2
import numpy as np
import pytest
import torch
import tyro

import benchmark
import eval_policy
import ppo_residual_groot
import ppo_residual_jacobian as ppo
from so101_env import SO101PaperSquareEnv

ROOT = pathlib.Path(__file__).resolve().parent.parent

TINY = dict(
    num_envs=2,
    num_steps=32,
    total_timesteps=128,
    num_minibatches=2,
    update_epochs=1,
    num_workers=0,
    critic_warmup_iterations=0,
    eval_every=0,
    hidden_size=16,
)


class BlowingUpEnv(SO101PaperSquareEnv):
    """Injects a NaN velocity into the physics every 20th step."""

    def step(self, action):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls % 20 == 0:
            self.data.qvel[3] = np.nan
        return super().step(action)


def test_nan_physics_truncates_episodes_and_training_goes_on(tmp_path, monkeypatch):
    def make_env(args, tape_half_size):
        return lambda: __import__("gymnasium").wrappers.RecordEpisodeStatistics(
            BlowingUpEnv(tape_half_size=tape_half_size)
        )

    monkeypatch.setattr(ppo, "make_env", make_env)
    run_dir = ppo.main(ppo.Args(run_dir=str(tmp_path), **TINY))
    final = ppo.load_checkpoint(run_dir / "checkpoints" / "final.pt")
    assert final["global_step"] == 128
    assert all(torch.isfinite(p).all() for p in final["agent"].values())

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    unstable = sum(e.value for e in events.Scalars("charts/unstable_episodes"))
    assert unstable >= 4  # 64 steps per env, a blow-up every 20


def test_instability_warning_is_counted_not_fatal():
    env = SO101PaperSquareEnv()
    env.reset(seed=0)
    env.data.qacc_warmstart[:] = 1e30  # huge warm start: MuJoCo flags the step as unstable
    env.data.qvel[:] = 1e12
    _, _, terminated, truncated, info = env.step(np.zeros(6))
    assert truncated and not terminated and info["sim_unstable"]
    assert env.unstable_episodes == 1
    obs, *_ = env.step(np.zeros(6))  # the env keeps working
    assert np.all(np.isfinite(obs))


def test_interrupted_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    ppo.save_checkpoint(path, {"format": ppo.CHECKPOINT_FORMAT, "value": 1})

    def crash_midway(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        ppo.save_checkpoint(path, {"format": ppo.CHECKPOINT_FORMAT, "value": 2})
    monkeypatch.undo()
    assert torch.load(path, weights_only=False)["value"] == 1


def test_garbage_checkpoint_is_refused(tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="truncated or corrupted"):
        ppo.load_checkpoint(tmp_path / "garbage.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a residual-PPO checkpoint"):
        ppo.load_checkpoint(tmp_path / "other.pt")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--alpha", "-0.1"], "--alpha must be within"),
        (["--num-steps", "-4"], r"--num-steps must be within \[1, "),
        (["--residual-log-std", "nan"], "--residual-log-std must be a finite number"),
        (["--learning-rate", "inf"], "--learning-rate must be a finite number"),
        (["--eval-episodes", "0"], r"--eval-episodes must be within \[1, "),
        (["--num-envs", "10000"], r"--num-envs must be within \[1, 256\]"),
        (["--base-policy", "il", "--il-checkpoint", "missing.pt"], "missing.pt does not exist"),
        (["--num-envs", "0"], r"--num-envs must be within \[1, 256\]"),
        (["--randomization-scale", "0"], r"--randomization-scale must be within \(0.0, 3.0\]"),
        (["--seed", "-5"], r"--seed must be within \[0, 4294967295\], got -5"),
        (["--exp-name", "../x"], "--exp-name '../x' must be a single name"),
        (["--exp-name", "a/b"], "--exp-name 'a/b' must be a single name"),
        (["--torch-threads", "100000"], r"--torch-threads must be within \[1, "),
        (["--num-steps", "1000000000"], r"--num-steps must be within \[1, 1048576\]"),
        (["--num-envs", "256", "--num-steps", "8192"], r"--num-envs \* --num-steps must be within \[--num-minibatches, 1048576\], got 2097152"),
        (["--hidden-size", "1000000"], r"--hidden-size must be within \[1, 4096\]"),
        (["--total-timesteps", "1000000000000000"], r"--total-timesteps must be within \[1, 10000000000\]"),
        (["--device", "nonsense"], "--device 'nonsense' is not a torch device"),
    ],
)
def test_training_cli_rejects_nonsense(argv, message):
    import tyro

    with pytest.raises(SystemExit, match=message):
        ppo.validate_args(tyro.cli(ppo.Args, args=argv))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--n-episodes", "-3", "--base-policy", "zero"], r"--n-episodes must be within \[1, "),
        (["--base-policy", "zero", "--seed", "-1"], r"--seed must be within \[0, 4294967295\]"),
        (["--base-policy", "zero", "--torch-threads", "100000"], r"--torch-threads must be within \[1, "),
        # The cameras render into the scene's 640 x 480 offscreen framebuffer: refused before any episode.
        (["--base-policy", "zero", "--save-video", "--video-size", "482"], r"--video-size must be within \[16, 480\]"),
        (["--base-policy", "groot", "--groot.chunk-steps", "0"], r"--groot.chunk-steps must be within \[1, 16\]"),
        ([], "name something to evaluate"),
        (["--model-path", "/nonexistent/best.pt"], "does not exist"),
    ],
)
def test_eval_cli_rejects_nonsense(argv, message):
    import tyro

    import eval_policy

    with pytest.raises(SystemExit, match=message):
        eval_policy.main(tyro.cli(eval_policy.Args, args=argv))


# ----- every numeric option is finite and within a stated range ---------------------------------

RUNTIME_FIELDS = {"batch_size", "minibatch_size", "num_iterations"}  # the trainers compute these; not options


def numeric_options(options, prefix: str = ""):
    """(dotted name, number type, whether it is a tuple of them) of each int or float option of a dataclass of
    options, nested groups (--groot.*) included."""
    hints = typing.get_type_hints(type(options))
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        if dataclasses.is_dataclass(value):
            yield from numeric_options(value, f"{prefix}{field.name}.")
            continue
        hint = hints[field.name]
        types = set(typing.get_args(hint)) or {hint}
        kind = float if float in types else int if int in types else None
        if kind is not None and field.name not in RUNTIME_FIELDS:
            yield prefix + field.name, kind, typing.get_origin(hint) is tuple


def with_option(options, name: str, value):
    group, _, rest = name.partition(".")
    if rest:
        return dataclasses.replace(options, **{group: with_option(getattr(options, group), rest, value)})
    return dataclasses.replace(options, **{name: value})


@pytest.mark.parametrize("script, check", [(ppo, "validate_args"), (ppo_residual_groot, "validate_args"),
                                           (eval_policy, "check_args"), (benchmark, "check_args")])
def test_every_numeric_option_has_a_stated_range(script, check):
    unbounded = []
    for name, kind, is_tuple in numeric_options(script.Args()):
        flag = "--" + name.replace("_", "-")
        for extreme in (kind(10**30), kind(-(10**30))):
            value = (extreme,) if is_tuple else extreme
            try:
                getattr(script, check)(with_option(script.Args(), name, value))
            except SystemExit as refused:
                if re.search(re.escape(flag) + r" must be within [\[(].*, got", str(refused)):
                    continue
            unbounded.append(f"{flag} {value}")
    assert not unbounded, f"accepted without a stated range: {unbounded}"


@pytest.mark.parametrize("command", [
    ["ppo_residual_jacobian.py", "--torch-threads", "100000"],  # torch segfaults with that many threads
    ["eval_policy.py", "--aggregate-json", "broken.json", "broken.json"],
])
def test_a_bad_option_ends_in_one_line_and_exit_status_2(command, tmp_path):
    (tmp_path / "broken.json").write_text('{"policies": 5}')
    done = subprocess.run([sys.executable, str(ROOT / command[0]), *command[1:]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert [path.name for path in tmp_path.iterdir()] == ["broken.json"]  # no run directory, no output


def checkpoint_summary(model_path, **changes) -> dict:
    """One checkpoint's summary as eval_policy.py --output-json writes it."""
    episode = dict(seed=0, success=True, reward=9.0, final_distance=0.01, final_orientation_error=0.1, length=50,
                   unstable=False)
    summary = dict(policy="residual+jacobian", model_path=model_path, n_episodes=1, success_rate=1.0,
                   success_rate_ci95=[0.2, 1.0], mean_reward=9.0, mean_final_distance=0.01, unstable_episodes=0,
                   mean_episode_length=50.0, episodes=[episode])
    return summary | changes


@pytest.mark.parametrize("content", [
    {"policies": 5},
    {"policies": [5]},
    {"policy": 3, "model_path": "a.pt"},
    {"policies": [checkpoint_summary(["a.pt"])]},
    {"policies": [checkpoint_summary("a.pt", episodes=[])]},
    {"policies": [checkpoint_summary("a.pt", episodes=[{"seed": "0"}])]},
    {"policies": [checkpoint_summary("a.pt", episodes=[5])]},
    {"policies": [checkpoint_summary("a.pt", success_rate="high")]},
    {"policies": [checkpoint_summary("a.pt", success_rate=1.5)]},
    {"policies": [{k: v for k, v in checkpoint_summary("a.pt").items() if k != "success_rate_ci95"}]},
])
def test_a_malformed_aggregate_json_is_refused_in_one_line(content, tmp_path):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"policies": [checkpoint_summary("b.pt")]}))
    (tmp_path / "fine.json").write_text(json.dumps({"policies": [checkpoint_summary("a.pt")]}))
    eval_policy.main(eval_policy.Args(aggregate_json=[str(tmp_path / "fine.json"), str(good)]))  # the well-formed pair
    bad.write_text(json.dumps(content))
    with pytest.raises(SystemExit) as refused:
        eval_policy.main(eval_policy.Args(aggregate_json=[str(bad), str(good)]))
    assert refused.value.code == 2 and str(bad) in str(refused.value) and "\n" not in str(refused.value)


# ----- no output replaces a file the program did not write ---------------------------------------


def evaluate_zero(*flags: str) -> list[dict]:
    return eval_policy.main(tyro.cli(eval_policy.Args, args=["--base-policy", "zero", "--n-episodes", "1",
                                                             "--video-size", "32", *flags]))


def files_under(directory: pathlib.Path) -> list[str]:
    return sorted(path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file())


@pytest.mark.parametrize("flags, existing", [
    (["--output-json", "out/eval.json"], "out/eval.json"),
    (["--output-json", "out/eval.json", "--plot"], "out/eval.png"),
    (["--plot"], "runs/eval/eval.png"),
    (["--output-json", "out/eval.json", "--save-video", "--n-videos", "1"], "out/videos/zero_seed0.mp4"),
])
def test_eval_never_replaces_a_file_it_did_not_write(flags, existing, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / existing).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / existing).write_bytes(b"precious")
    with pytest.raises(SystemExit) as refused:
        evaluate_zero(*flags)
    assert refused.value.code == 2 and existing in str(refused.value) and "--overwrite" in str(refused.value)
    assert files_under(tmp_path) == [existing] and (tmp_path / existing).read_bytes() == b"precious"  # refused before any episode
    evaluate_zero(*flags, "--overwrite")
    assert (tmp_path / existing).read_bytes() != b"precious"


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_an_output_that_is_an_input_of_the_run_is_refused_even_with_overwrite(overwrite, tmp_path):
    checkpoint = tmp_path / "residual.pt"
    shutil.copy(ROOT / "checkpoints" / "residual_jacobian_seed1.pt", checkpoint)
    before = checkpoint.read_bytes()
    with pytest.raises(SystemExit) as refused:
        eval_policy.main(tyro.cli(eval_policy.Args, args=["--model-path", str(checkpoint), "--n-episodes", "1",
                                                          "--output-json", str(checkpoint), *overwrite]))
    assert refused.value.code == 2 and "input of this run" in str(refused.value)
    assert checkpoint.read_bytes() == before


def half_written_then_disk_full(path, *args, **kwargs):
    pathlib.Path(path).write_bytes(b"half")
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("flags, target, writer", [
    (["--output-json", "eval.json"], "eval.json", (pathlib.Path, "write_text")),
    (["--save-video", "--n-videos", "1"], "runs/eval/videos/zero_seed0.mp4", (imageio.v2, "mimwrite")),
])
def test_an_output_write_that_fails_midway_keeps_the_previous_file(flags, target, writer, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / target).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / target).write_bytes(b"previous")
    monkeypatch.setattr(*writer, half_written_then_disk_full)
    with pytest.raises(SystemExit) as failed:
        evaluate_zero(*flags, "--overwrite")
    assert "No space left on device" in str(failed.value) and str(target) in str(failed.value)
    assert files_under(tmp_path) == [target] and (tmp_path / target).read_bytes() == b"previous"  # no temporary left


def test_benchmark_never_replaces_a_file_it_did_not_write(tmp_path):
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("measured last week")
    quick = dict(only=("env",), seconds=0.01, rounds=1, output=str(report))
    with pytest.raises(SystemExit) as refused:
        benchmark.main(benchmark.Args(**quick))
    assert refused.value.code == 2 and "--overwrite" in str(refused.value)
    assert report.read_text() == "measured last week"
    benchmark.main(benchmark.Args(**quick, overwrite=True))
    assert report.read_text().startswith("# Benchmarks")
    assert files_under(tmp_path) == ["BENCHMARKS.md"]


@pytest.mark.parametrize("overrides, message", [
    (dict(seconds=math.nan), "--seconds must be a finite number"),
    (dict(rounds=0), r"--rounds must be within \[1, "),
    (dict(only=("env", "gpu")), r"unknown --only section\(s\) \['gpu'\]"),
    (dict(only=("time95",), sb3_seeds=()), "time95 needs --our-runs"),
    (dict(sb3_seeds=(-1,)), r"--sb3-seeds must be within \[0, 4294967295\], got -1"),
])
def test_benchmark_refuses_nonsense_before_measuring(overrides, message):
    with pytest.raises(SystemExit) as refused:
        benchmark.main(benchmark.Args(**{"only": ("env",), "seconds": 0.01, "rounds": 1, **overrides}))
    assert refused.value.code == 2 and re.search(message, str(refused.value))

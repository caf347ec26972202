"""Faults: simulation blow-ups during training, interrupted checkpoint writes, nonsense input."""

import numpy as np
import pytest
import torch

import ppo_residual_jacobian as ppo
from so101_env import SO101PaperSquareEnv

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
            BlowingUpEnv(act_scale=args.act_scale, tape_half_size=tape_half_size)
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
        (["--num-steps", "-4"], "--num-steps must be at least 1"),
        (["--act-scale", "nan"], "--act-scale must be a finite number"),
        (["--learning-rate", "inf"], "--learning-rate must be a finite number"),
        (["--eval-episodes", "0"], "--eval-episodes must be at least 1"),
        (["--num-envs", "10000"], r"--num-envs must be within \[1, 256\]"),
        (["--base-policy", "nonsense"], "is unknown"),
        (["--num-envs", "0"], r"--num-envs must be within \[1, 256\]"),
        (["--randomization-scale", "0"], r"--randomization-scale must be within \(0.0, 3.0\]"),
    ],
)
def test_training_cli_rejects_nonsense(argv, message):
    import tyro

    with pytest.raises(SystemExit, match=message):
        ppo.validate_args(tyro.cli(ppo.Args, args=argv))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--n-episodes", "-3", "--base-policy", "zero"], "--n-episodes must be at least 1"),
        (["--base-policy", "nonsense"], "unknown --base-policy"),
        ([], "name something to evaluate"),
        (["--model-path", "/nonexistent/best.pt"], "does not exist"),
    ],
)
def test_eval_cli_rejects_nonsense(argv, message):
    import tyro

    import eval_policy

    with pytest.raises(SystemExit, match=message):
        eval_policy.main(tyro.cli(eval_policy.Args, args=argv))

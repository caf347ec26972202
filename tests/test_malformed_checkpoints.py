"""A malformed residual checkpoint is refused with one line before anything runs: by evaluation (wrong
types, NaN, missing fields, a program with NaN weights) and by --resume (an agent or optimizer that does
not fit, missing or mistyped training state); a compressed .pt, which could expand to any size, is
refused before it is expanded."""

import math
import zipfile

import pytest
import torch

import checkpoint_io
import eval_policy
import ppo_residual_jacobian as ppo
from actor_program import export_actor
from checkpoint_io import load_checkpoint, save_checkpoint
from so101_env import ACTION_DIM, STATE_DIM
from test_reliability import ROOT, TINY

EXAMPLE = ROOT / "checkpoints" / "residual_jacobian_seed1.pt"


def refused_in_one_line(run, capsys) -> str:
    """The one `error:` line (exit status 2) that `run()` ends with."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        run()
    assert refused.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ")
    return line


def program_with_a_nan_weight() -> torch.Tensor:
    agent = ppo.Agent(STATE_DIM, ACTION_DIM, hidden_size=16)
    with torch.no_grad():
        agent.actor_mean[0].weight[3, 5] = math.nan
    return export_actor(agent.residual_mean, STATE_DIM, ACTION_DIM)


EVALUATION_FAULTS = {  # what is changed in the example checkpoint -> a word the refusal names
    "alpha as a string": (lambda c: c.update(alpha="0.5"), "alpha"),
    "NaN alpha": (lambda c: c.update(alpha=math.nan), "alpha"),
    "base without a name": (lambda c: c["base_config"].pop("name"), "base_config"),
    "act_scale as a string": (lambda c: c["base_config"].update(act_scale="0.02"), "act_scale"),
    "state size as a string": (lambda c: c.update(state_dim=str(STATE_DIM)), "state_dim"),
    "args as a list": (lambda c: c.update(args=[1, 2]), "args"),
    "NaN in the agent": (lambda c: c["agent"]["critic.0.bias"].fill_(math.nan), "critic.0.bias"),
    "NaN in the actor program": (lambda c: c.update(actor_program=program_with_a_nan_weight()), "NaN"),
}


@pytest.mark.parametrize("fault", EVALUATION_FAULTS)
def test_evaluation_refuses_a_malformed_checkpoint_in_one_line(fault, tmp_path, capsys):
    checkpoint = torch.load(EXAMPLE, weights_only=True)
    change, named = EVALUATION_FAULTS[fault]
    change(checkpoint)
    save_checkpoint(tmp_path / "bad.pt", checkpoint)
    line = refused_in_one_line(
        lambda: eval_policy.main(eval_policy.Args(model_path=str(tmp_path / "bad.pt"), n_episodes=1)), capsys)
    assert "bad.pt" in line and named in line


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    return ppo.main(ppo.Args(run_dir=str(tmp_path_factory.mktemp("runs")), seed=6, **TINY))


def first_key_of(state: dict, kind: str) -> str:
    return next(key for key in state if key.startswith(kind))


RESUME_FAULTS = {  # what is changed in a run's final.pt -> a word the refusal names
    "a weight of another shape": (lambda c: c["agent"].update({"actor_mean.0.weight": torch.zeros(16, 30)}), "actor_mean.0.weight"),
    "a missing buffer": (lambda c: c["agent"].pop("state_norm.mean"), "state_norm.mean"),
    "NaN in a weight": (lambda c: c["agent"]["actor_mean.2.weight"].fill_(math.nan), "actor_mean.2.weight"),
    "no best_eval": (lambda c: c.pop("best_eval"), "best_eval"),
    "a string step": (lambda c: c.update(global_step="128"), "global_step"),
    "recent successes as a number": (lambda c: c.update(recent_successes=3), "recent_successes"),
    "NaN tape size": (lambda c: c.update(tape_half_size=math.nan), "tape_half_size"),
    "optimizer state of another shape": (
        lambda c: c["optimizer"]["state"][0].update(exp_avg=torch.zeros(3)), "optimizer"),
    "NaN optimizer state": (lambda c: c["optimizer"]["state"][1]["exp_avg_sq"].fill_(math.nan), "optimizer"),
    "a string option": (lambda c: c["args"].update(hidden_size="16"), "--hidden-size"),
}


@pytest.mark.parametrize("fault", RESUME_FAULTS)
def test_resume_refuses_a_malformed_checkpoint_in_one_line(fault, finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    checkpoint = load_checkpoint(finished_run / "checkpoints" / "final.pt")
    change, named = RESUME_FAULTS[fault]
    change(checkpoint)
    torch.save(checkpoint, run / "checkpoints" / "final.pt")
    line = refused_in_one_line(
        lambda: ppo.main(ppo.Args(resume=str(run / "checkpoints" / "final.pt"), total_timesteps=256)), capsys)
    assert "final.pt" in line and named in line
    assert sorted(path.name for path in run.rglob("*")) == ["checkpoints", "final.pt"]  # nothing written


def recompressed(source, target, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(source) as stored, zipfile.ZipFile(target, "w", compression) as packed:
        for entry in stored.infolist():
            packed.writestr(entry.filename, stored.read(entry))


def test_torch_save_stores_its_entries_uncompressed(tmp_path):
    """What the refusal below relies on: a checkpoint a training script writes holds no compressed entry."""
    save_checkpoint(tmp_path / "c.pt", torch.load(EXAMPLE, weights_only=True))
    with zipfile.ZipFile(tmp_path / "c.pt") as archive:
        assert {entry.compress_type for entry in archive.infolist()} == {zipfile.ZIP_STORED}


def test_a_compressed_checkpoint_is_refused_before_it_is_expanded(tmp_path):
    checkpoint = torch.load(EXAMPLE, weights_only=True)
    checkpoint["agent"]["padding"] = torch.zeros(16 << 20, dtype=torch.uint8)  # 16 MB that deflate packs into kB
    save_checkpoint(tmp_path / "big.pt", checkpoint)
    recompressed(tmp_path / "big.pt", tmp_path / "bomb.pt")
    assert (tmp_path / "bomb.pt").stat().st_size < 2 << 20
    with pytest.raises(ValueError, match=r"bomb.pt: its entry .* is compressed"):
        load_checkpoint(tmp_path / "bomb.pt")


def test_a_checkpoint_larger_than_the_cap_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_io, "CHECKPOINT_MAX_BYTES", 100_000)  # the example holds ~0.9 MB
    with pytest.raises(ValueError, match=r"residual_jacobian_seed1.pt: its entries hold \d+ bytes, more than 100000"):
        load_checkpoint(EXAMPLE)

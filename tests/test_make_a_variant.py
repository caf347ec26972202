"""A copy of the Jacobian trainer with another actor is evaluated exactly as it trained; a checkpoint
without its actor program, or of the old format, is refused with one clear line."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

import eval_policy
import ppo_residual_jacobian as ppo
from checkpoint_io import load_checkpoint, save_checkpoint
from so101_env import ACTION_DIM, STATE_DIM, SO101PaperSquareEnv

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "checkpoints" / "residual_jacobian_seed1.pt"

# (text of ppo_residual_jacobian.py, the variant's text): ReLU, other widths, three hidden layers, and
# one more actor input, the paper-to-goal distance, computed from the raw state.
VARIANT_EDITS = [
    ("""        self.actor_mean = nn.Sequential(
            layer_init(nn.Linear(state_dim + action_dim, hidden_size)),
            nn.Tanh(),
            layer_init(nn.Linear(hidden_size, hidden_size)),
            nn.Tanh(),
            layer_init(nn.Linear(hidden_size, action_dim), std=0.0),  # residual starts at exactly zero
        )""",
     """        self.actor_mean = nn.Sequential(
            layer_init(nn.Linear(state_dim + action_dim, 48)),
            nn.ReLU(),
            layer_init(nn.Linear(48, 40)),
            nn.ReLU(),
            layer_init(nn.Linear(40, 40)),
            nn.ReLU(),
            layer_init(nn.Linear(40, action_dim), std=0.0),
        )"""),
    ("torch.cat([self.state_norm(state), base_action], dim=-1)",
     "torch.cat([self.state_norm(state), base_action, state[:, 22:25].norm(dim=-1, keepdim=True)], dim=-1)"),
    ("state_dim + action_dim", "state_dim + action_dim + 1"),  # the actor's input width, wherever it is used
]
TINY_FLAGS = ["--num-envs", "2", "--num-steps", "32", "--total-timesteps", "128", "--num-minibatches", "2",
              "--update-epochs", "2", "--num-workers", "0", "--critic-warmup-iterations", "1", "--eval-every", "0",
              "--no-capture-video", "--learning-rate", "0.003"]


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    """(the variant script, the final checkpoint of its two-iteration run)."""
    root = tmp_path_factory.mktemp("variant")
    source = (ROOT / "ppo_residual_jacobian.py").read_text()
    for old, new in VARIANT_EDITS:
        assert old in source, f"ppo_residual_jacobian.py no longer holds {old!r}: update VARIANT_EDITS"
        source = source.replace(old, new)
    script = root / "ppo_residual_relu_variant.py"
    script.write_text(source)
    run = subprocess.run([sys.executable, str(script), "--run-dir", str(root / "runs"), *TINY_FLAGS], cwd=root,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    (final,) = (root / "runs").glob("*/checkpoints/final.pt")
    return script, final


def test_a_copied_script_with_another_actor_is_evaluated_exactly_as_it_trained(variant, monkeypatch):
    script, final = variant
    checkpoint = load_checkpoint(final)
    assert checkpoint["trainer"] == script.name and checkpoint["agent"]["actor_mean.0.weight"].shape == (48, 32)

    # The reference: the variant's own agent, from its own module, run on the same episodes.
    spec = importlib.util.spec_from_file_location("ppo_residual_relu_variant", script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    agent = module.Agent(STATE_DIM, ACTION_DIM, checkpoint["args"]["hidden_size"])
    agent.load_state_dict(checkpoint["agent"])

    def residual_mean(states, base_actions):
        with torch.no_grad():
            return agent.residual_mean(torch.as_tensor(states, dtype=torch.float32),
                                       torch.as_tensor(base_actions, dtype=torch.float32)).numpy()

    state = SO101PaperSquareEnv().reset(seed=0)[0][None].astype(np.float32)
    assert np.abs(residual_mean(state, np.zeros((1, ACTION_DIM), np.float32))).max() > 1e-3  # it learned something

    args = eval_policy.Args(model_path=str(final), n_episodes=3, seed=40)
    evaluated = eval_policy.main(args)[0]["episodes"]
    reference = eval_policy.evaluate("variant", eval_policy.residual_from_loaded(checkpoint, residual_mean), args)
    assert evaluated == reference["episodes"]  # success, reward, length, final distance: every float equal


def test_a_checkpoint_without_its_actor_program_is_refused_with_one_clear_line(tmp_path, capsys):
    checkpoint = torch.load(EXAMPLE, weights_only=True)
    del checkpoint["actor_program"]
    save_checkpoint(tmp_path / "no_program.pt", checkpoint)
    with pytest.raises(SystemExit) as refused:
        eval_policy.main(eval_policy.Args(model_path=str(tmp_path / "no_program.pt"), n_episodes=1))
    assert refused.value.code == 2  # bad input
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "no_program.pt has no actor_program, the exported residual actor that evaluation runs" in line
    assert "save `export_actor(agent.residual_mean, ...)` as its \"actor_program\"" in line


def test_a_format_1_checkpoint_is_refused_by_evaluation_and_resume(tmp_path):
    checkpoint = torch.load(EXAMPLE, weights_only=True)
    old = tmp_path / "old.pt"
    save_checkpoint(old, {**checkpoint, "format": 1})
    with pytest.raises(SystemExit, match="old.pt is a format-1 checkpoint, from before checkpoints carried the actor "
                                         "program that evaluation runs; train it again"):
        eval_policy.main(eval_policy.Args(model_path=str(old), n_episodes=1))
    with pytest.raises(SystemExit, match="cannot resume: .*old.pt is a format-1 checkpoint"):
        ppo.main(ppo.Args(resume=str(old)))

"""The residual actor exported into checkpoints: it computes what the agent computes, exporting it
changes nothing in training, and reading it runs no code from the file."""

import io
import json
import pickle
import random
import zipfile

import numpy as np
import pytest
import torch
import torch.nn as nn

import ppo_residual_jacobian as ppo
from actor_program import ActorProgram, export_actor
from checkpoint_io import load_actor_program
from so101_env import ACTION_DIM, STATE_DIM


def trained_agent(state_dim: int = STATE_DIM) -> ppo.Agent:
    """An agent whose residual is not zero and whose normalization has seen states."""
    torch.manual_seed(0)
    agent = ppo.Agent(state_dim, ACTION_DIM, hidden_size=16)
    with torch.no_grad():
        for parameter in agent.parameters():
            parameter.normal_()
        agent.state_norm.update(torch.randn(64, state_dim) * 3 + 1)
    return agent


@pytest.fixture(scope="module")
def agent():
    return trained_agent()


@pytest.fixture(scope="module")
def program(agent):
    return export_actor(agent.residual_mean, STATE_DIM, ACTION_DIM)


def inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    return (generator.normal(size=(n, STATE_DIM)).astype(np.float32) * 5,
            generator.uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32))


def residual_mean(agent: ppo.Agent, states: np.ndarray, base_actions: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return agent.residual_mean(torch.as_tensor(states), torch.as_tensor(base_actions)).numpy()


def test_the_program_computes_the_agents_residual_exactly_for_any_batch_size(agent, program):
    actor = ActorProgram(program)
    for n in (1, 2, 7):
        states, base_actions = inputs(n, seed=n)
        residual = actor(states, base_actions)
        assert residual.dtype == np.float32 and np.abs(residual).max() > 0.1
        np.testing.assert_array_equal(residual, residual_mean(agent, states, base_actions))


def test_exporting_leaves_training_alone_and_the_checkpoint_loads_weights_only(agent, tmp_path):
    agent.train()
    weights = {name: tensor.clone() for name, tensor in agent.state_dict().items()}
    generators = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    threads, grad = torch.get_num_threads(), torch.is_grad_enabled()

    program = export_actor(agent.residual_mean, STATE_DIM, ACTION_DIM)

    assert torch.equal(generators[0], torch.get_rng_state()) and random.getstate() == generators[2]
    assert (np.random.get_state()[1] == generators[1]).all()
    assert (torch.get_num_threads(), torch.is_grad_enabled(), agent.training) == (threads, grad, True)
    assert all(torch.equal(weights[name], tensor) for name, tensor in agent.state_dict().items())
    torch.save({"actor_program": program}, tmp_path / "checkpoint.pt")
    loaded = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["actor_program"]
    assert loaded.dtype == torch.uint8 and torch.equal(loaded, program)


class Noisy(nn.Module):
    def residual_mean(self, states, base_actions):
        return base_actions + torch.randn_like(base_actions)


def test_an_actor_its_program_cannot_reproduce_fails_when_exported():
    with pytest.raises(ValueError, match="the exported Noisy.residual_mean computes other outputs than the method"):
        export_actor(Noisy().residual_mean, STATE_DIM, ACTION_DIM)


# ---------------------------------------------------------------------- what a file cannot do
def rewritten(program: torch.Tensor, edit) -> torch.Tensor:
    """The archive with `edit(files)` applied to its {path below the top folder: bytes}."""
    with zipfile.ZipFile(io.BytesIO(program.numpy().tobytes())) as archive:
        top = archive.namelist()[0].split("/")[0]
        files = {name.split("/", 1)[1]: archive.read(name) for name in archive.namelist()}
    edit(files)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(f"{top}/{name}", data)
    return torch.frombuffer(bytearray(out.getvalue()), dtype=torch.uint8)


def edit_json(files: dict, name: str, change) -> None:
    document = json.loads(files[name])
    change(document)
    files[name] = json.dumps(document).encode()


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickled_tensor_is_refused_unread(program, tmp_path):
    marker = tmp_path / "code_ran"

    def pickle_the_first_constant(files):
        config = json.loads(files["data/constants/model_constants_config.json"])
        name, payload = next(iter(config["config"].items()))
        payload["use_pickle"] = True  # torch.export.load would torch.load(weights_only=False) this file
        files[f"data/constants/{payload['path_name']}"] = pickle.dumps(RunsCode(marker))
        files["data/constants/model_constants_config.json"] = json.dumps(config).encode()

    with pytest.raises(ValueError, match="pickled object, which evaluation does not unpickle"):
        ActorProgram(rewritten(program, pickle_the_first_constant))
    assert not marker.exists()


def test_code_in_the_guards_and_shape_expressions_never_runs(agent, program, tmp_path):
    marker = tmp_path / "code_ran"
    code = f"open({str(marker)!r}, 'w')"

    def plant_code(document):
        document["guards_code"] = [code]  # ExportedProgram.module() would exec it
        tensor_values = document["graph_module"]["graph"]["tensor_values"]
        next(iter(tensor_values.values()))["sizes"][0] = {"as_expr": {"expr_str": code, "hint": None}}  # sympy would eval it

    actor = ActorProgram(rewritten(program, lambda files: edit_json(files, "models/model.json", plant_code)))
    states, base_actions = inputs(3)
    np.testing.assert_array_equal(actor(states, base_actions), residual_mean(agent, states, base_actions))
    assert not marker.exists()


@pytest.mark.parametrize("target", ["torch.os.system", "torch.ops.aten.from_file.default", "builtins.exec"])
def test_only_aten_tensor_operators_are_called(program, target):
    def call(document):
        document["graph_module"]["graph"]["nodes"][0]["target"] = target

    with pytest.raises(ValueError, match=f"it calls {target}, which evaluation does not run"):
        ActorProgram(rewritten(program, lambda files: edit_json(files, "models/model.json", call)))


def test_what_is_not_an_actor_program_is_refused_with_a_reason(program):
    with pytest.raises(ValueError, match="not a byte tensor"):
        ActorProgram(program.float())
    with pytest.raises(ValueError, match="not a torch.export archive"):
        ActorProgram(program[: len(program) // 2].clone())
    with pytest.raises(ValueError, match="schema is 99.x"):
        ActorProgram(rewritten(program, lambda files: edit_json(
            files, "models/model.json", lambda document: document["schema_version"].update(major=99))))


# ---------------------------------------------------------------------- a checkpoint's program
class ThreeOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(STATE_DIM + ACTION_DIM, 3)

    def residual_mean(self, states, base_actions):
        return self.linear(torch.cat([states, base_actions], dim=-1))


def test_a_checkpoint_program_of_another_signature_is_refused():
    other_states = trained_agent(state_dim=10)
    with pytest.raises(ValueError, match=r"x.pt: its actor program does not map states \[N, 25\] and base actions "
                                         r"\[N, 6\] to float32 residuals \[N, 6\] \(for N = 1 it fails: .*\)"):
        load_actor_program({"actor_program": export_actor(other_states.residual_mean, 10, ACTION_DIM)}, "x.pt")
    with pytest.raises(ValueError, match=r"for N = 1 it returns float32 \[1, 3\]"):
        load_actor_program({"actor_program": export_actor(ThreeOutputs().residual_mean, STATE_DIM, ACTION_DIM)}, "x.pt")
    with pytest.raises(ValueError, match="x.pt has no actor_program, the exported residual actor that evaluation runs"):
        load_actor_program({"agent": {}}, "x.pt")

"""What the scripts' command lines promise: the GR00T scripts run out of the box (the committed
simulator checkpoint, offline, from any directory), a checkpoint that cannot be found ends in one
line and exit status 2, the GR00T options are one group in every script, and a resumed run keeps
its options, the nested group's included."""

import dataclasses
import inspect
import os
import pathlib
import socket
import subprocess
import sys
import typing

import numpy as np
import pytest
import torch
import tyro

import eval_policy
import groot_base
import ppo_residual_groot
import ppo_residual_jacobian
import record_demos
import residual_policy
from base_policies import BASE_POLICIES, camera_images, make_base_policy
from checkpoint_io import load_checkpoint, save_checkpoint
from command_line import resume_options
from groot_base import GROOT_BACKENDS, REAL_ROBOT_CHECKPOINT, GrootOptions
from groot_fixtures import checkpoint_dir, one_torch_thread, tokenizer_dir  # noqa: F401 (fixtures)
from groot_model import NOISE_MODES
from joint_units import JOINT_UNITS
from so101_env import SO101PaperSquareEnv

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_with_no_flags_the_groot_base_is_the_committed_sim_checkpoint_and_needs_no_network(monkeypatch, tmp_path):
    import huggingface_hub

    def no_hub(*args, **kwargs):
        raise AssertionError(f"tried the Hugging Face hub: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_hub)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # any working directory
    options = ppo_residual_groot.Args().groot
    assert pathlib.Path(options.model) == ROOT / "checkpoints" / "groot_n15_small_so101_sim"
    assert eval_policy.Args().groot.base_kwargs()["checkpoint"] == options.model
    options.check_checkpoint()
    base = make_base_policy("groot", 1, device="cpu", **options.base_kwargs())
    env = SO101PaperSquareEnv()
    states, _ = env.reset(seed=0)
    action = base.act(states[None], camera_images(base, lambda: [env.render_cameras()]))
    env.close()
    assert action.shape == (1, 6) and np.isfinite(action).all()


MISSING_DIRECTORY = "no/such/checkpoint/directory"
MISSING_ON_THE_HUB = "nobody-here/no-such-gr00t"  # offline: no download is tried


@pytest.mark.parametrize("missing", [MISSING_DIRECTORY, MISSING_ON_THE_HUB])
@pytest.mark.parametrize("script, flags", [("ppo_residual_groot.py", ["--groot.model"]),
                                           ("eval_policy.py", ["--base-policy", "groot", "--groot.model"]),
                                           ("serve_groot.py", ["--port", "0"])])
def test_a_checkpoint_that_cannot_be_found_ends_in_one_line_and_exit_status_2(script, flags, missing, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / script), *flags, missing], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and missing in lines[0], done.stderr
    assert "pass" in lines[0].lower()  # says what to do instead
    assert not list(tmp_path.iterdir())  # no run directory, no output


def choices(hint) -> set:
    """The values a Literal type hint allows (within an Optional too)."""
    if typing.get_origin(hint) is typing.Literal:
        return set(typing.get_args(hint))
    return set().union(*(choices(arg) for arg in typing.get_args(hint)))


def test_the_option_choices_are_the_values_the_code_accepts():
    hints = typing.get_type_hints(GrootOptions)
    assert choices(hints["backend"]) == set(GROOT_BACKENDS)
    assert choices(hints["noise"]) == set(NOISE_MODES)
    assert choices(hints["units"]) == set(JOINT_UNITS)
    assert choices(typing.get_type_hints(eval_policy.Args)["base_policy"]) == set(BASE_POLICIES)
    assert choices(typing.get_type_hints(ppo_residual_jacobian.Args)["base_policy"]) == set(BASE_POLICIES) - {"groot"}
    assert choices(typing.get_type_hints(record_demos.Args)["units"]) == set(JOINT_UNITS)


def test_the_real_robot_checkpoint_is_one_flag_away():
    model_help = inspect.getsource(GrootOptions).split("model: str")[1].split('"""')[1]  # what --help shows
    assert REAL_ROBOT_CHECKPOINT in model_help


def test_each_script_keeps_its_own_groot_defaults():
    assert ppo_residual_groot.Args().groot.noise == "zero"  # a deterministic base for the residual
    evaluation = eval_policy.Args().groot
    assert all(value is None for value in vars(evaluation).values())  # a residual checkpoint's, where safe
    assert evaluation.base_kwargs()["noise"] == "random"  # the base alone: as Isaac-GR00T runs it


# ----- what a residual checkpoint may choose of its GR00T base, and what only the command line chooses

GROOT_RESIDUAL = ROOT / "checkpoints" / "residual_groot_small_so101_sim.pt"


class BaseBuilt(Exception):
    """Raised in place of building a base: the test reads the arguments it would have been built with."""


def evaluation_base_kwargs(flags: list[str], monkeypatch) -> dict:
    """make_base_policy's keyword arguments for the checkpoint's base in `python eval_policy.py FLAGS`."""
    def build(name, num_envs, **kwargs):
        raise BaseBuilt(kwargs)

    monkeypatch.setattr(residual_policy, "make_base_policy", build)  # where a checkpoint's base is built
    with pytest.raises(BaseBuilt) as built:
        eval_policy.main(tyro.cli(eval_policy.Args, args=flags))
    return built.value.args[0]


def crafted_groot_residual(tmp_path, **base_settings) -> str:
    checkpoint = torch.load(GROOT_RESIDUAL, weights_only=True)
    checkpoint["base_config"].update(base_settings)
    save_checkpoint(tmp_path / "crafted.pt", checkpoint)
    return str(tmp_path / "crafted.pt")


def refusal(flags: list[str], capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        eval_policy.main(tyro.cli(eval_policy.Args, args=flags))
    assert refused.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    return line


def test_explicit_groot_flags_always_win_over_the_checkpoint_and_the_rest_comes_from_it(monkeypatch):
    """tyro cannot tell a flag given its default value from no flag: `--groot.noise random` (eval's
    default) must still replace the checkpoint's zero noise."""
    stored = evaluation_base_kwargs(["--model-path", str(GROOT_RESIDUAL), "--seed", "4"], monkeypatch)
    assert stored["noise"] == "zero" and stored["chunk_steps"] == 16 and stored["keep_corrections"] is True
    assert stored["seed"] == 4  # the episodes' seed draws the flow noise, so a rerun replays them
    given = evaluation_base_kwargs(["--model-path", str(GROOT_RESIDUAL), "--seed", "4", "--groot.noise", "random",
                                    "--groot.chunk-steps", "8", "--groot.keep-corrections", "False"], monkeypatch)
    assert given["noise"] == "random" and given["chunk_steps"] == 8 and given["keep_corrections"] is False
    assert {key: value for key, value in given.items() if key not in ("noise", "chunk_steps", "keep_corrections")} == \
        {key: value for key, value in stored.items() if key not in ("noise", "chunk_steps", "keep_corrections")}


def test_the_committed_groot_checkpoint_is_stored_by_its_name_and_found_from_any_directory(monkeypatch, tmp_path):
    from groot_base import GROOT_SIM_CHECKPOINT, GR00TBasePolicy
    from groot_checkpoint import load_metadata, resolve_checkpoint

    class Backend:  # a loaded model stand-in: the base reads only its metadata here
        def get_metadata(self):
            return load_metadata(resolve_checkpoint(GROOT_SIM_CHECKPOINT, weights=False))

    base = GR00TBasePolicy(1, checkpoint=GROOT_SIM_CHECKPOINT, model=Backend())
    assert base.config()["checkpoint"] == "checkpoints/groot_n15_small_so101_sim"  # the same on every machine
    assert torch.load(GROOT_RESIDUAL, weights_only=True)["base_config"]["checkpoint"] == base.config()["checkpoint"]
    monkeypatch.chdir(tmp_path)  # where that relative name names nothing
    kwargs = evaluation_base_kwargs(["--model-path", str(GROOT_RESIDUAL)], monkeypatch)
    assert kwargs["checkpoint"] == GROOT_SIM_CHECKPOINT


def test_a_stored_local_groot_checkpoint_is_used_and_a_missing_one_is_named(monkeypatch, tmp_path, capsys):
    local = tmp_path / "my_groot"
    local.mkdir()
    kwargs = evaluation_base_kwargs(["--model-path", crafted_groot_residual(tmp_path, checkpoint=str(local))], monkeypatch)
    assert kwargs["checkpoint"] == str(local)
    line = refusal(["--model-path", crafted_groot_residual(tmp_path, checkpoint="/nowhere/my_groot")], capsys)
    assert "/nowhere/my_groot" in line and "pass --groot.model" in line


def test_a_checkpoint_never_sends_the_token_to_a_server_it_names(tmp_path, monkeypatch, capsys):
    """GROOT_API_TOKEN goes to a server only when the command line names it: a checkpoint that says its
    base is a server is refused with the flags to pass, and nothing connects until they are given."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        crafted = crafted_groot_residual(tmp_path, backend="server", host="127.0.0.1", port=port, timeout_s=1.0)
        monkeypatch.setenv("GROOT_API_TOKEN", "secret")
        line = refusal(["--model-path", crafted], capsys)
        assert f"pass --groot.backend server --groot.host 127.0.0.1 --groot.port {port} to evaluate it against one" in line
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody called
        with pytest.raises(SystemExit, match="cannot evaluate"):  # confirmed: it asks that server, which never answers
            eval_policy.main(tyro.cli(eval_policy.Args, args=["--model-path", crafted, "--groot.backend", "server",
                                                               "--groot.host", "127.0.0.1", "--groot.port", str(port)]))
        listener.accept()[0].close()


@pytest.mark.parametrize("setting, flags", [
    (dict(checkpoint="someone/groot-repo"), "pass --groot.model someone/groot-repo"),
    (dict(checkpoint="someone/groot-repo", revision="step-9"), "pass --groot.model someone/groot-repo --groot.revision step-9"),
    (dict(tokenizer="someone/tokenizer"), "pass --groot.tokenizer someone/tokenizer"),
])
def test_a_checkpoint_never_downloads_a_hub_repository_it_names(setting, flags, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    downloads = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *args, **kwargs: downloads.append(args) or 1 / 0)
    line = refusal(["--model-path", crafted_groot_residual(tmp_path, **setting)], capsys)
    assert flags in line and not downloads


def test_a_resumed_run_keeps_its_options_the_nested_group_option_by_option():
    defaults = ppo_residual_groot.Args()
    saved = dataclasses.asdict(ppo_residual_groot.Args(alpha=0.4, groot=dataclasses.replace(defaults.groot, chunk_steps=8)))
    given = ppo_residual_groot.Args(resume="run/latest.pt", total_timesteps=10**6, alpha=0.5,
                                    groot=dataclasses.replace(defaults.groot, backend="server"))
    args, ignored = resume_options(given, saved, defaults)
    assert args.alpha == 0.4 and args.groot.chunk_steps == 8 and args.groot.backend == "local"
    assert args.groot.noise == "zero" and isinstance(args.groot, GrootOptions)
    assert args.total_timesteps == 10**6 and args.resume == "run/latest.pt"  # a larger budget extends the run
    assert ignored == ["--alpha", "--groot.backend"]


@pytest.fixture(scope="module")
def groot_run(tmp_path_factory, checkpoint_dir, tokenizer_dir):
    """One iteration of ppo_residual_groot.py on a tiny GR00T checkpoint that stands for the committed one."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(groot_base, "GROOT_SIM_CHECKPOINT", str(checkpoint_dir))
        groot = GrootOptions(model=str(checkpoint_dir), tokenizer=str(tokenizer_dir), dtype="float32", noise="zero")
        return ppo_residual_groot.main(ppo_residual_groot.Args(
            run_dir=str(tmp_path_factory.mktemp("runs")), device="cpu", groot=groot, num_envs=2, num_steps=16,
            total_timesteps=32, num_minibatches=2, update_epochs=1, async_envs=False, critic_warmup_iterations=0,
            eval_every=0, capture_video=False, hidden_size=16))


def test_a_groot_run_stores_the_committed_checkpoint_by_name_and_resumes_from_any_directory(
        groot_run, checkpoint_dir, monkeypatch, tmp_path):
    final = groot_run / "checkpoints" / "final.pt"
    stored = load_checkpoint(final)
    assert stored["args"]["groot"]["model"] == stored["base_config"]["checkpoint"] == "checkpoints/groot_n15_small_so101_sim"
    monkeypatch.setattr(groot_base, "GROOT_SIM_CHECKPOINT", str(checkpoint_dir))  # this machine's committed checkpoint
    monkeypatch.chdir(tmp_path)
    args, _, run_dir = ppo_residual_groot.prepare_run(ppo_residual_groot.Args(resume=str(final), total_timesteps=64))
    assert args.groot.model == str(checkpoint_dir) and run_dir == groot_run


@pytest.mark.parametrize("setting, flags", [
    (dict(backend="server", host="gpu-box.invalid", port=6000, timeout=1.0),
     ["--groot.backend", "server", "--groot.host", "gpu-box.invalid", "--groot.port", "6000"]),
    (dict(model="someone/groot-repo"), ["--groot.model", "someone/groot-repo"]),
])
def test_a_resumed_groot_run_reaches_a_server_or_the_hub_only_when_the_command_line_names_it(
        groot_run, setting, flags, monkeypatch, tmp_path, capsys):
    import huggingface_hub

    downloads = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *args, **kwargs: downloads.append(args) or 1 / 0)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    final = tmp_path / "run" / "checkpoints" / "final.pt"
    checkpoint = load_checkpoint(groot_run / "checkpoints" / "final.pt")
    checkpoint["args"]["groot"].update(setting)
    save_checkpoint(final, checkpoint)
    resume = ["--resume", str(final), "--total-timesteps", "64"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        ppo_residual_groot.main(tyro.cli(ppo_residual_groot.Args, args=resume))
    assert refused.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"pass {' '.join(flags)} to resume it" in line and not downloads
    if "--groot.backend" in flags:  # named: the run goes on against that server
        args, _, _ = ppo_residual_groot.prepare_run(tyro.cli(ppo_residual_groot.Args, args=resume + flags))
        assert (args.groot.backend, args.groot.host, args.groot.port) == ("server", "gpu-box.invalid", 6000)
    else:  # named: the checkpoint is looked up on the hub
        with pytest.raises(SystemExit, match="could not be downloaded"):
            ppo_residual_groot.prepare_run(tyro.cli(ppo_residual_groot.Args, args=resume + flags))
        assert downloads and downloads[0][0] == "someone/groot-repo"

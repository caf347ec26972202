"""Nothing lost, nothing run: safe checkpoints, unique run directories, workers that die with their
trainer, checked numbers, honest exit statuses and resumes."""

import itertools
import math
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

import eval_policy
import ppo_residual_jacobian as ppo
import train_bc
from checkpoint_io import load_actor_program, load_checkpoint, save_checkpoint
from episodes import EpisodeRecord
from run_dirs import create_run_dir
from stop_signals import StopSignals, close_writer
from so101_env import SO101PaperSquareEnv

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = dict(num_envs=2, num_steps=32, total_timesteps=128, num_minibatches=2, update_epochs=1, num_workers=0,
            critic_warmup_iterations=0, eval_every=1, eval_episodes=1, capture_video=False, hidden_size=16)
TINY_FLAGS = ["--num-envs", "2", "--num-steps", "32", "--num-minibatches", "2", "--update-epochs", "1",
              "--critic-warmup-iterations", "0", "--eval-every", "1", "--eval-episodes", "1", "--no-capture-video",
              "--hidden-size", "16"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    return ppo.main(ppo.Args(run_dir=str(tmp_path_factory.mktemp("runs")), seed=2, **TINY))


# ----- 1. loading a checkpoint runs no code ------------------------------------------------------


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_and_nothing_runs(finished_run, tmp_path):
    marker = tmp_path / "code_ran"
    good = load_checkpoint(finished_run / "checkpoints" / "final.pt")
    torch.save({**good, "args": RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="refusing to load .*could run code"):
        load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(SystemExit, match="refusing to load"):
        eval_policy.main(eval_policy.Args(model_path=str(tmp_path / "evil.pt"), n_episodes=1))
    with pytest.raises(SystemExit, match="cannot resume: refusing to load"):
        ppo.main(ppo.Args(resume=str(tmp_path / "evil.pt")))
    assert not marker.exists()


def test_checkpoints_hold_only_plain_data(finished_run):
    checkpoint = torch.load(finished_run / "checkpoints" / "final.pt", weights_only=True)  # raises on any object
    assert isinstance(checkpoint["args"], dict) and checkpoint["trainer"] == "ppo_residual_jacobian.py"


def test_evaluation_runs_the_checkpoints_actor_program_which_is_the_trained_agents_residual(finished_run):
    path = finished_run / "checkpoints" / "final.pt"
    checkpoint = load_checkpoint(path)
    agent = ppo.Agent(25, 6, hidden_size=16)
    agent.load_state_dict(checkpoint["agent"])
    states, base_actions = np.random.default_rng(0).normal(size=(32, 25)) * 3, np.random.default_rng(1).uniform(-1, 1, (32, 6))
    with torch.no_grad():
        expected = agent.residual_mean(torch.as_tensor(states, dtype=torch.float32),
                                       torch.as_tensor(base_actions, dtype=torch.float32)).numpy()
    np.testing.assert_array_equal(load_actor_program(checkpoint, path)(states, base_actions), expected)


# ----- 3. run directories are never shared -------------------------------------------------------


def test_two_runs_started_in_the_same_second_get_their_own_directories(tmp_path, monkeypatch):
    clock = itertools.count()
    monkeypatch.setattr(ppo.time, "time", lambda: 1_700_000_000.0 + next(clock) * 1e-3)  # both within one second
    first = ppo.main(ppo.Args(run_dir=str(tmp_path), seed=1, **{**TINY, "total_timesteps": 64}))
    second = ppo.main(ppo.Args(run_dir=str(tmp_path), seed=1, **{**TINY, "total_timesteps": 64}))
    assert first != second and second.name == first.name + "-2"
    assert (first / "checkpoints" / "final.pt").is_file() and (second / "checkpoints" / "final.pt").is_file()
    assert create_run_dir(tmp_path, first.name).name == first.name + "-3"


def test_checkpoint_writers_never_share_a_temporary_file(tmp_path, monkeypatch):
    temporaries = []
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, path: (temporaries.append(pathlib.Path(path).name), real_save(obj, path)))
    save_checkpoint(tmp_path / "latest.pt", {"value": 1})
    save_checkpoint(tmp_path / "latest.pt", {"value": 2})
    assert len(set(temporaries)) == 2 and all(str(os.getpid()) in name for name in temporaries)
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]


# ----- 4. rollout workers die with their trainer -------------------------------------------------


def children_of(pid: int) -> list[int]:
    found = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(child) for child in found]


def alive(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_when_the_trainer_is_killed(tmp_path):
    trainer = subprocess.Popen(
        [sys.executable, "ppo_residual_jacobian.py", "--num-workers", "2", *TINY_FLAGS, "--total-timesteps", "1000000",
         "--run-dir", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workers = []
    try:
        assert trainer.stdout.readline()  # the first iteration is done: the workers are running
        workers = children_of(trainer.pid)
        assert len(workers) == 2
        trainer.kill()  # SIGKILL, as the out-of-memory killer does
        trainer.wait()
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in workers), "rollout workers outlived their trainer"
    finally:
        trainer.kill()
        for pid in workers:
            if alive(pid):  # leave no stray process behind, even when the test fails
                os.kill(pid, signal.SIGKILL)


# ----- 6. nonsense is refused, blow-ups never look like success ----------------------------------


@pytest.mark.parametrize("kwargs", [dict(act_scale=math.nan), dict(act_scale=-0.1), dict(tape_half_size=math.nan),
                                    dict(tape_half_size=0.5), dict(image_size=0)])
def test_the_env_refuses_nonsense_settings(kwargs):
    with pytest.raises(ValueError):
        SO101PaperSquareEnv(**kwargs)


def test_stepping_before_reset_raises():
    env = SO101PaperSquareEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(6))


def test_a_blow_up_reports_no_distance_and_is_not_averaged_in():
    env = SO101PaperSquareEnv()
    env.reset(seed=0)
    env.data.qvel[:] = np.nan
    _, _, _, truncated, info = env.step(np.zeros(6))
    assert truncated and info["sim_unstable"] and math.isnan(info["dist_to_goal"])
    records = [EpisodeRecord(0, False, -5.0, 0.3, 0.1, 400), EpisodeRecord(1, False, 0.0, math.nan, math.nan, 3, True)]
    summary = eval_policy.summarize("p", records)
    assert summary["mean_final_distance"] == pytest.approx(0.3) and summary["unstable_episodes"] == 1


@pytest.mark.parametrize("overrides, message", [
    (dict(batch_size=0), r"--batch-size must be within \[1, 65536\]"),
    (dict(learning_rate=math.nan), "--learning-rate must be a finite number"),
    (dict(num_updates=0), "--num-updates must be at least 1"),
])
def test_train_bc_refuses_nonsense_before_training(overrides, message, tmp_path):
    with pytest.raises(SystemExit, match=message):
        train_bc.main(train_bc.Args(dataset=str(tmp_path / "none"), run_dir=str(tmp_path), **overrides))
    assert not any(tmp_path.iterdir())  # refused before creating anything


# ----- 7. exit statuses and resume ---------------------------------------------------------------


def test_sigterm_saves_a_checkpoint_and_exits_143(tmp_path):
    trainer = subprocess.Popen(
        [sys.executable, "ppo_residual_jacobian.py", *TINY_FLAGS, "--total-timesteps", "1000000", "--run-dir", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert trainer.stdout.readline().startswith("iter 1/")
    trainer.terminate()
    output, _ = trainer.communicate(timeout=60)
    assert trainer.returncode == 143, output
    (run_dir,) = tmp_path.iterdir()
    assert load_checkpoint(run_dir / "checkpoints" / "latest.pt")["iteration"] >= 1


def test_a_repeated_sigterm_does_not_interrupt_the_save_that_the_first_started():
    """`timeout` sends SIGTERM to the trainer and again to its process group: the copy that lands
    while latest.pt is being written must not abort the write."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        stop = StopSignals()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # the second copy: no KeyboardInterrupt this time
        assert stop.exit_status == 143
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_close_writer_flushes_a_healthy_writer_and_gives_up_on_a_stuck_one(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    writer.add_scalar("charts/x", 1.5, 7)
    close_writer(writer)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("charts/x")] == [(7, 1.5)]

    release = threading.Event()

    class StuckWriter:  # what an interrupted SummaryWriter does: close() waits for its sleeping thread
        def close(self):
            release.wait()

    start = time.monotonic()
    close_writer(StuckWriter(), timeout_s=0.2)
    assert time.monotonic() - start < 5 and "did not close within" in capsys.readouterr().err
    release.set()


def test_a_finished_run_is_not_rewritten_and_extends_only_when_asked(finished_run, tmp_path, capsys):
    run = tmp_path / finished_run.name
    shutil.copytree(finished_run, run)
    final = run / "checkpoints" / "final.pt"
    before = final.read_bytes()
    with pytest.raises(SystemExit, match="finished run"):
        ppo.main(ppo.Args(resume=str(final)))
    assert final.read_bytes() == before

    ppo.main(ppo.Args(resume=str(final), total_timesteps=192, learning_rate=1.0, seed=9))
    out = capsys.readouterr().out
    assert "ignored --learning-rate, --seed" in out
    extended = load_checkpoint(final)
    assert extended["global_step"] == 192 and extended["args"]["total_timesteps"] == 192
    assert extended["args"]["learning_rate"] == 3e-4


def test_a_resumed_copy_writes_beside_its_checkpoint_never_where_the_file_says(finished_run, tmp_path):
    """`cp -a` a run and resume the copy: the copy is extended, the original is untouched, and the run
    directory named inside the file (here a crafted one) gets nothing."""
    original = {path: path.read_bytes() for path in finished_run.rglob("*") if path.is_file()}
    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    final = copy / "checkpoints" / "final.pt"
    elsewhere = tmp_path / "elsewhere"
    save_checkpoint(final, {**load_checkpoint(final), "run_dir": str(elsewhere)})
    assert ppo.main(ppo.Args(resume=str(final), total_timesteps=192)) == copy
    assert load_checkpoint(final)["global_step"] == 192
    assert {path: path.read_bytes() for path in finished_run.rglob("*") if path.is_file()} == original
    assert not elsewhere.exists()


def test_a_checkpoint_outside_a_runs_checkpoints_folder_is_refused_for_resume(finished_run, tmp_path, capsys):
    loose = tmp_path / "latest.pt"
    shutil.copy(finished_run / "checkpoints" / "final.pt", loose)
    with pytest.raises(SystemExit) as refused:
        ppo.main(ppo.Args(resume=str(loose), total_timesteps=192))
    assert refused.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "copy it to" in line and "checkpoints/latest.pt" in line
    assert sorted(path.name for path in tmp_path.iterdir()) == ["latest.pt"]


def test_a_run_directory_held_by_a_live_trainer_is_refused_and_released_when_it_dies(tmp_path):
    trainer = subprocess.Popen(
        [sys.executable, "ppo_residual_jacobian.py", *TINY_FLAGS, "--num-workers", "0", "--total-timesteps", "1000000",
         "--run-dir", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert trainer.stdout.readline().startswith("iter 1/")
        (run_dir,) = tmp_path.iterdir()
        latest = run_dir / "checkpoints" / "latest.pt"
        deadline = time.monotonic() + 60
        while not latest.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        second = subprocess.run([sys.executable, "ppo_residual_jacobian.py", "--resume", str(latest),
                                 "--total-timesteps", "2000000"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        (line,) = second.stderr.strip().splitlines()
        assert f"in use by process {trainer.pid}" in line
    finally:
        trainer.kill()  # SIGKILL: no clean-up code runs, the kernel drops the lock
        trainer.wait()
    from run_dirs import hold_run_dir

    with hold_run_dir(run_dir):
        pass


def test_a_checkpoint_without_optimizer_state_evaluates_but_is_refused_for_resume(tmp_path):
    example = ROOT / "checkpoints" / "residual_jacobian_seed1.pt"
    assert "optimizer" not in torch.load(example, weights_only=True)  # kept small: weights and the actor program
    resumed = subprocess.run([sys.executable, str(ROOT / "ppo_residual_jacobian.py"), "--resume", str(example),
                              "--total-timesteps", "100000000"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 2
    (line,) = resumed.stderr.strip().splitlines()
    assert "no optimizer state" in line and "evaluate" in line
    assert not any(tmp_path.iterdir()) and not (ROOT / "checkpoints" / "final.pt").exists()
    summary, = eval_policy.main(eval_policy.Args(model_path=str(example), n_episodes=1))
    assert summary["n_episodes"] == 1


def test_resume_after_a_hard_kill_logs_no_step_twice(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    real_save = ppo.save_checkpoint

    def save_and_keep_iteration_one(path, payload):
        real_save(path, payload)
        if path.name == "latest.pt" and payload["iteration"] == 1:
            shutil.copy(path, path.with_name("at_iteration_1.pt"))

    monkeypatch.setattr(ppo, "save_checkpoint", save_and_keep_iteration_one)
    run_dir = ppo.main(ppo.Args(run_dir=str(tmp_path), seed=5, **TINY))
    monkeypatch.undo()
    # As if the trainer had been killed after logging iteration 2 but before checkpointing it.
    ppo.main(ppo.Args(resume=str(run_dir / "checkpoints" / "at_iteration_1.pt")))
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert [event.step for event in events.Scalars("charts/SPS")] == [64, 128]


def test_a_groot_checkpoint_given_to_the_jacobian_script_is_a_clear_error(finished_run, tmp_path):
    payload = load_checkpoint(finished_run / "checkpoints" / "final.pt")
    groot = {**payload, "trainer": "ppo_residual_groot.py", "base_config": {"name": "groot", "act_scale": 0.02},
             "args": {**payload["args"], "groot": {"model": "some/checkpoint"}}}
    save_checkpoint(tmp_path / "checkpoints" / "groot.pt", groot)
    with pytest.raises(SystemExit, match="trained on the 'groot' base by ppo_residual_groot.py; resume it with that script"):
        ppo.main(ppo.Args(resume=str(tmp_path / "checkpoints" / "groot.pt")))


def test_a_jacobian_checkpoint_given_to_the_groot_script_is_a_clear_error(finished_run):
    import ppo_residual_groot

    with pytest.raises(SystemExit, match="cannot resume: .*'jacobian' base, not 'groot' .*ppo_residual_jacobian.py"):
        ppo_residual_groot.main(ppo_residual_groot.Args(resume=str(finished_run / "checkpoints" / "final.pt")))

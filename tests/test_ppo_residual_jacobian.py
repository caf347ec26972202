"""ppo_residual_jacobian.py end to end on a tiny budget, checkpoints, resume, and evaluation."""

import json
import pathlib
import time

import numpy as np
import pytest
import torch

import eval_policy
import ppo_residual_jacobian as ppo
from base_policies import make_base_policy
from rollout_workers import RolloutWorkers
from so101_env import SO101PaperSquareEnv

TINY = dict(
    num_envs=2,
    num_steps=32,
    total_timesteps=128,  # two iterations of 64 steps
    num_minibatches=2,
    update_epochs=2,
    num_workers=2,  # the default path: envs in worker processes
    critic_warmup_iterations=1,
    eval_every=1,
    eval_episodes=1,
    hidden_size=32,
)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_root = tmp_path_factory.mktemp("runs")
    run_dir = ppo.main(ppo.Args(run_dir=str(run_root), seed=3, **TINY))
    return run_dir


def test_training_writes_checkpoints_events_and_video(trained_run):
    checkpoints = trained_run / "checkpoints"
    assert {p.name for p in checkpoints.iterdir()} == {"best.pt", "latest.pt", "final.pt"}
    assert list(trained_run.glob("events.out.tfevents.*"))
    videos = sorted((trained_run / "videos").glob("*.mp4"))
    assert len(videos) == 2 and all(v.stat().st_size > 1000 for v in videos)

    final = ppo.load_checkpoint(checkpoints / "final.pt")
    assert final["global_step"] == 128 and final["iteration"] == 2
    assert final["base_config"]["name"] == "jacobian"
    assert set(final["agent"]) >= {"state_norm.mean", "state_norm.var", "state_norm.count"}
    assert final["agent"]["state_norm.count"] > 100  # statistics of the rollouts were recorded


def test_tensorboard_scalars(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained_run), size_guidance={"images": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {"charts/SPS", "charts/alpha", "losses/value_loss", "losses/policy_loss", "residual/penalty",
                "eval/success_rate"}
    assert expected <= tags
    assert "eval/video" in events.Tags()["images"]
    # Training time at each evaluation (what time-to-95 % is read from): one value per evaluation, rising.
    minutes = [e.value for e in events.Scalars("eval/training_minutes")]
    assert [e.step for e in events.Scalars("eval/training_minutes")] == [e.step for e in events.Scalars("eval/success_rate")]
    assert minutes == sorted(minutes) and minutes[0] > 0


def test_untrained_residual_reproduces_the_base_exactly():
    agent = ppo.Agent(25, 6, hidden_size=32)
    states = torch.randn(64, 25) * 5
    base_actions = torch.rand(64, 6) * 2 - 1
    assert torch.count_nonzero(agent.residual_mean(states, base_actions)) == 0

    def rollout(policy):
        env = SO101PaperSquareEnv()
        obs, _ = env.reset(seed=11)
        trajectory = [obs]
        for _ in range(80):
            obs = env.step(policy(obs))[0]
            trajectory.append(obs)
        return np.stack(trajectory)

    base_only = make_base_policy("jacobian", num_envs=1)
    base_for_residual = make_base_policy("jacobian", num_envs=1)

    def residual_at_init(obs):
        base_action = base_for_residual.act(obs[None])
        with torch.no_grad():
            residual = agent.residual_mean(torch.as_tensor(obs[None]), torch.as_tensor(base_action)).numpy()
        return (base_action + 0.5 * residual)[0]

    np.testing.assert_array_equal(rollout(lambda o: base_only.act(o[None])[0]), rollout(residual_at_init))


def short_episode_env(args, tape_half_size):
    import gymnasium as gym

    return lambda: gym.wrappers.RecordEpisodeStatistics(
        SO101PaperSquareEnv(tape_half_size=tape_half_size, max_episode_steps=15)
    )


def tiny_collector_factory(args, agent, storage):
    """make_collector(columns) as the script builds it, with 15-step episodes."""
    import gymnasium as gym

    def make(columns):
        envs = gym.vector.SyncVectorEnv([short_episode_env(args, 0.1) for _ in range(columns.stop - columns.start)],
                                        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        base = make_base_policy("jacobian", num_envs=envs.num_envs)
        return ppo.RolloutCollector(args, envs, base, agent, storage, columns, seed=5)

    return make


def test_rollout_workers_collect_what_one_process_collects():
    args = ppo.Args(num_envs=3, num_steps=40, hidden_size=16)
    agent = ppo.Agent(25, 6, hidden_size=16)

    def collect(num_workers):
        storage = ppo.RolloutStorage.zeros(args.num_steps, args.num_envs, 25, 6, "cpu")
        make = tiny_collector_factory(args, agent, storage)
        if num_workers:
            collector = RolloutWorkers(make, args.num_envs, num_workers, [agent, *vars(storage).values()], seed=5)
        else:
            collector = make(slice(0, args.num_envs))
        # Critic warm-up rollouts act with the residual mean: no sampling, so the two must agree.
        stats = collector.collect(alpha=0.5, warmup=True)
        collector.close()
        return storage, stats

    in_process, in_process_stats = collect(0)
    in_workers, worker_stats = collect(2)  # uneven slices: envs [0] and [1, 2]
    for name in ("states", "actor_inputs", "residuals", "rewards", "dones", "values", "next_states", "next_dones"):
        torch.testing.assert_close(getattr(in_workers, name), getattr(in_process, name), msg=name)
    assert sorted(worker_stats["lengths"]) == sorted(in_process_stats["lengths"]) == [15] * 6
    assert worker_stats["unstable"] == in_process_stats["unstable"] == 0
    assert in_workers.dones[15].tolist() == [1.0, 1.0, 1.0]  # the step after the first episodes ended


def test_a_failing_rollout_worker_reports_its_error(monkeypatch):
    def make(envs):
        raise ValueError("no such base")

    broadcast = RolloutWorkers._broadcast

    def after_the_workers_exited(self, *args):
        time.sleep(0.5)  # the failed workers have sent their error and closed their pipe ends
        return broadcast(self, *args)

    monkeypatch.setattr(RolloutWorkers, "_broadcast", after_the_workers_exited)

    with pytest.raises(RuntimeError, match="rollout worker failed(.|\n)*ValueError: no such base"):
        storage = ppo.RolloutStorage.zeros(4, 2, 25, 6, "cpu")
        RolloutWorkers(make, 2, 2, [ppo.Agent(25, 6, hidden_size=16), *vars(storage).values()], seed=0)


def test_interrupt_saves_a_checkpoint_and_resume_continues(tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt  # as if Ctrl-C arrived during the first evaluation

    monkeypatch.setattr(ppo, "evaluate", interrupt)
    with pytest.raises(SystemExit) as stopped:
        ppo.main(ppo.Args(run_dir=str(tmp_path), seed=4, **TINY))
    assert stopped.value.code == 130  # as a shell reports Ctrl-C: not a success
    (run_dir,) = tmp_path.iterdir()
    latest = run_dir / "checkpoints" / "latest.pt"
    saved = ppo.load_checkpoint(latest)
    assert saved["iteration"] == 1 and saved["global_step"] == 64
    assert not (run_dir / "checkpoints" / "final.pt").exists()

    monkeypatch.undo()
    ppo.main(ppo.Args(resume=str(latest)))
    final = ppo.load_checkpoint(run_dir / "checkpoints" / "final.pt")
    assert final["iteration"] == 2 and final["global_step"] == 128
    # The optimizer state came back too: Adam's step counter kept counting.
    adam_steps = lambda checkpoint: next(iter(checkpoint["optimizer"]["state"].values()))["step"]  # noqa: E731
    assert adam_steps(final) == 2 * adam_steps(saved)


def test_mismatched_and_corrupted_checkpoints_are_refused(trained_run, tmp_path):
    good = torch.load(trained_run / "checkpoints" / "final.pt", weights_only=False)
    with pytest.raises(ValueError, match="'jacobian' base, not 'zero'"):
        ppo.load_checkpoint(trained_run / "checkpoints" / "final.pt", base_policy="zero")
    wrong_size = dict(good, state_dim=31)
    torch.save(wrong_size, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="observations of size 31"):
        ppo.load_checkpoint(tmp_path / "wrong.pt")
    data = (trained_run / "checkpoints" / "final.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        ppo.load_checkpoint(tmp_path / "truncated.pt")
    with pytest.raises(FileNotFoundError):
        ppo.load_checkpoint(tmp_path / "missing.pt")


def test_eval_on_checkpoint_writes_json_png_and_videos(trained_run, tmp_path):
    out = tmp_path / "eval" / "residual.json"
    args = eval_policy.Args(
        model_path=str(trained_run / "checkpoints" / "final.pt"),
        compare_base=True,
        compare_zero=True,
        n_episodes=2,
        seed=5,
        output_json=str(out),
        plot=True,
        save_video=True,
        n_videos=1,
        video_size=48,
    )
    summaries = eval_policy.main(args)
    assert [s["policy"] for s in summaries] == ["residual+jacobian", "jacobian", "zero"]
    result = json.loads(out.read_text())
    assert [p["policy"] for p in result["policies"]] == ["residual+jacobian", "jacobian", "zero"]
    assert (tmp_path / "eval" / "residual.png").stat().st_size > 10_000
    videos = sorted(p.name for p in (tmp_path / "eval" / "videos").glob("*.mp4"))
    assert videos == ["jacobian_seed5.mp4", "residual+jacobian_seed5.mp4", "zero_seed5.mp4"]


def test_eval_refuses_checkpoint_for_another_base(trained_run):
    args = eval_policy.Args(model_path=str(trained_run / "checkpoints" / "final.pt"), base_policy="zero", n_episodes=1)
    with pytest.raises(SystemExit, match="'jacobian' base, not 'zero'"):
        eval_policy.main(args)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(alpha=1.5), "--alpha must be within"),
        (dict(total_timesteps=-5), r"--total-timesteps must be within \[1, "),
        (dict(base_policy="il"), "needs --il-checkpoint"),
        (dict(learning_rate=0.0), r"--learning-rate must be within \(0.0, 1.0\]"),
    ],
)
def test_nonsense_arguments_are_rejected(overrides, message):
    with pytest.raises(SystemExit, match=message):
        ppo.validate_args(ppo.Args(**overrides))


def test_rollout_workers_start_when_the_update_uses_several_threads(tmp_path):
    """Workers forked after torch's OpenMP pool has started would hang in their first rollout."""
    import subprocess
    import sys

    command = [sys.executable, "ppo_residual_jacobian.py", "--torch-threads", "2", "--num-workers", "2", "--num-envs", "2",
               "--num-steps", "16", "--total-timesteps", "32", "--num-minibatches", "2", "--update-epochs", "1",
               "--eval-every", "0", "--run-dir", str(tmp_path)]
    root = pathlib.Path(__file__).resolve().parents[1]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "saved" in done.stdout


@pytest.mark.parametrize("num_workers", [0, 2])
def test_same_seed_same_training_as_before_the_redesign(num_workers, tmp_path):
    """The layout redesign moved code, not behaviour: a seeded run ends with the weights (and the
    normalization statistics) that the code before it produced, in one process and in workers."""
    expected = json.loads((pathlib.Path(__file__).parent / "data" / "training_before_redesign.json").read_text())
    args = ppo.Args(total_timesteps=2 * 4 * 64, num_envs=4, num_steps=64, num_minibatches=4, update_epochs=2,
                    critic_warmup_iterations=1, eval_every=0, capture_video=False, run_dir=str(tmp_path),
                    num_workers=num_workers, seed=3)
    agent = ppo.load_checkpoint(ppo.main(args) / "checkpoints" / "final.pt")["agent"]
    for name, (total, total_abs) in expected[f"workers{num_workers}"].items():
        # Tight enough to catch any change of algorithm; loose enough for another CPU's float rounding.
        assert float(agent[name].double().sum()) == pytest.approx(total, rel=1e-4, abs=1e-6), name
        assert float(agent[name].double().abs().sum()) == pytest.approx(total_abs, rel=1e-4, abs=1e-6), name

"""Imitation pipeline: record demos (LeRobot layout), train a chunk BC policy, use it as the il
base (alone, in a hybrid blend, under a residual), and refuse datasets, outputs and checkpoints
that do not fit."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import eval_policy
import ppo_residual_jacobian as ppo
import record_demos
import bc_policy
import train_bc
from base_policies import ILBasePolicy, base_policy_kwargs, make_base_policy, parse_hybrid_spec
from joint_units import JOINT_UNITS, joint_ranges, radians_to_units, units_from_tip, units_to_radians
from lerobot_dataset import DatasetWriter, read_dataset
from file_faults import edit_json, set_value
from so101_env import SO101PaperSquareEnv

TINY_BC = dict(chunk_size=4, chunk_steps=2, hidden_size=32, num_hidden_layers=2, num_updates=30, batch_size=64,
               log_every=10, eval_episodes=0, val_fraction=0.5)


def record(path, **overrides):
    # Seeds 2 and 3 are short Jacobian successes (about 120 steps each).
    args = dict(output_dir=str(path), n_episodes=2, seed=2, max_attempts=4, units="degrees", dart_noise_std=0.0)
    return record_demos.main(record_demos.Args(**{**args, **overrides}))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("demos") / "jacobian"
    record(path)
    return path


@pytest.fixture(scope="module")
def checkpoint(dataset, tmp_path_factory):
    runs = tmp_path_factory.mktemp("bc_runs")
    return train_bc.main(train_bc.Args(dataset=str(dataset), run_dir=str(runs), **TINY_BC))


def test_dataset_follows_the_lerobot_v2_layout(dataset):
    info = json.loads((dataset / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v2.0" and info["fps"] == 30 and info["robot_type"] == "so101_follower"
    assert info["total_episodes"] == 2 and info["so101_sim"]["joint_units"] == "degrees"
    assert info["features"]["observation.state"]["names"][0] == "shoulder_pan.pos"
    assert info["features"]["observation.environment_state"]["shape"] == [19]

    episodes = [json.loads(line) for line in (dataset / "meta" / "episodes.jsonl").read_text().splitlines()]
    tables = [pq.read_table(dataset / info["data_path"].format(episode_chunk=0, episode_index=i)) for i in range(2)]
    assert [e["length"] for e in episodes] == [t.num_rows for t in tables]
    assert sum(t.num_rows for t in tables) == info["total_frames"]
    assert tables[1].column("index").to_pylist()[0] == tables[0].num_rows
    assert tables[0].column("next.success").to_pylist()[-1] and tables[0].column("next.done").to_pylist()[-1]

    stats = json.loads((dataset / "meta" / "stats.json").read_text())
    joints = np.concatenate([np.array(t.column("observation.state").to_pylist()) for t in tables])
    for name, value in [("mean", joints.mean(0)), ("std", joints.std(0)), ("min", joints.min(0)), ("max", joints.max(0))]:
        np.testing.assert_allclose(stats["observation.state"][name], value, rtol=1e-4, atol=1e-3)
    assert np.abs(joints[:, :5]).max() > 10  # degrees, not radians

    demos = read_dataset(dataset)
    assert demos.units == "degrees" and len(demos.episodes) == 2
    first = demos.episodes[0]
    assert first["state"].shape == (episodes[0]["length"], 25)
    # The commanded targets differ from the joints by at most act_scale per step.
    assert np.abs(first["target"] - first["state"][:, :6]).max() <= 0.02 + 1e-5


def test_dart_noise_moves_the_env_but_labels_stay_the_demonstrators(tmp_path):
    record(tmp_path / "dart", units="radians", dart_noise_std=0.5, n_episodes=1, max_attempts=1, keep_failures=True)
    episode = read_dataset(tmp_path / "dart").episodes[0]
    labels = (episode["target"] - episode["state"][:, :6]) / 0.02
    replay = make_base_policy("jacobian", 1)
    replayed = np.concatenate([replay.act(state[None]) for state in episode["state"]])
    np.testing.assert_allclose(labels, replayed, atol=1e-4)
    clean = read_dataset(record(tmp_path / "clean", units="radians", n_episodes=1).root).episodes[0]
    assert not np.allclose(episode["state"][10], clean["state"][10])  # the noise did move the arm


@pytest.mark.parametrize("units", JOINT_UNITS)
def test_joint_units_round_trip(units):
    low, high = joint_ranges()
    q = np.stack([low, high, (low + high) / 2])
    np.testing.assert_allclose(units_to_radians(radians_to_units(q, units), units), q, atol=1e-9)
    values = radians_to_units(q, units)
    if units != "radians":
        assert values[0, 5] == pytest.approx(0.0) and values[1, 5] == pytest.approx(100.0)  # gripper 0..100
    if units == "range":
        np.testing.assert_allclose(values[:2, :5], [[-100] * 5, [100] * 5])


def test_units_a_dataset_does_not_name_come_from_its_tip_positions_else_the_caller(tmp_path):
    path = tmp_path / "range"
    record(path, units="range", n_episodes=1)
    reference = read_dataset(path)
    info_path = path / "meta" / "info.json"
    edit_json(info_path, lambda info: info.pop("so101_sim"))  # like a dataset from elsewhere
    assert read_dataset(path).units == "range"  # where the joints put the gripper tip in the task state
    edit_json(info_path, lambda info: info["features"]["observation.environment_state"].update(names=None))  # no tip, then
    with pytest.raises(ValueError, match=r"does not name its joint units .*; pass --units degrees .* or --units range"):
        read_dataset(path)
    with pytest.raises(SystemExit, match="cannot train: .* pass --units"):
        train_bc.main(train_bc.Args(dataset=str(path), run_dir=str(tmp_path / "runs"), **TINY_BC))
    demos = read_dataset(path, units="range")
    np.testing.assert_allclose(demos.episodes[0]["state"], reference.episodes[0]["state"])
    assert np.abs(demos.episodes[0]["state"][:, :6]).max() < 3.2  # back in radians


def test_units_from_tip_finds_the_one_unit_that_puts_the_gripper_tip_where_it_was():
    env, expert = SO101PaperSquareEnv(), make_base_policy("jacobian", 1)
    states = [env.reset(seed=2)[0]]
    for _ in range(30):
        states.append(env.step(expert.act(states[-1][None])[0])[0])
    states = np.array(states, dtype=np.float64)
    joints, tips = states[:, :6], states[:, 19:22]
    for units in JOINT_UNITS:
        assert units_from_tip(radians_to_units(joints, units).astype(np.float32), tips) == units
    assert units_from_tip(radians_to_units(joints, "degrees"), tips + [0.0, 0.0, 0.01]) is None  # another arm's tip
    # shoulder_lift alone moved: degrees and range agree (its span is 200 degrees), so neither is the one
    import mujoco  # after so101_env (imported above), which picks the headless OpenGL backend first

    data = mujoco.MjData(env.model)
    data.qpos[env.model.joint("shoulder_lift").qposadr[0]] = np.radians(-30.0)
    mujoco.mj_kinematics(env.model, data)
    lifted = np.array([[0.0, -30.0, 0.0, 0.0, 0.0, 50.0]])
    assert units_from_tip(lifted, data.site("gripperframe").xpos[None]) is None


def test_checkpoint_round_trip(checkpoint):
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["format"] == train_bc.CHECKPOINT_FORMAT and saved["version"] == train_bc.CHECKPOINT_VERSION
    assert (saved["state_dim"], saved["action_dim"], saved["chunk_size"]) == (25, 6, 4)
    assert saved["args"]["num_updates"] == 30 and saved["dataset"]["units"] == "degrees"
    policy, _ = bc_policy.load_bc_checkpoint(checkpoint, 25)
    assert torch.all(policy.state_std > 0) and torch.all(policy.action_std > 0)
    states = np.random.default_rng(0).normal(size=(3, 25))
    chunks = policy.predict(states)
    assert chunks.shape == (3, 4, 6) and np.abs(chunks).max() <= 1.0
    again, _ = bc_policy.load_bc_checkpoint(checkpoint, 25)
    np.testing.assert_array_equal(again.predict(states), chunks)


def test_il_base_runs_chunks_open_loop_batched_with_per_env_reset(checkpoint):
    base = ILBasePolicy(num_envs=3, checkpoint=str(checkpoint), chunk_steps=2)
    queried = []
    predict = base.policy.predict

    def spy(states):
        queried.append(len(states))
        return predict(states)

    base.policy.predict = spy
    states = np.stack([SO101PaperSquareEnv().reset(seed=i)[0] for i in range(3)])
    first = base.act(states)
    expected = predict(states)
    np.testing.assert_allclose(first, expected[:, 0], atol=1e-6)
    np.testing.assert_allclose(base.act(states + 1.0), expected[:, 1], atol=1e-6)  # open loop: state ignored
    base.reset(np.array([False, True, False]))
    base.act(states)  # all three chunks are used up: one batched query
    base.reset(np.array([False, True, False]))
    base.act(states)  # only env 1 was reset
    assert queried == [3, 3, 1]
    assert base.config() == {"name": "il", "act_scale": 0.02, "checkpoint": str(checkpoint), "chunk_steps": 2}


def test_il_base_evaluates_and_rescales_to_the_env_act_scale(checkpoint, tmp_path):
    out = tmp_path / "il.json"
    eval_policy.main(eval_policy.Args(base_policy="il", il_checkpoint=str(checkpoint), n_episodes=1, output_json=str(out)))
    assert json.loads(out.read_text())["n_episodes"] == 1
    state = SO101PaperSquareEnv().reset(seed=0)[0][None]
    native = make_base_policy("il", 1, checkpoint=str(checkpoint)).act(state)
    halved = make_base_policy("il", 1, act_scale=0.04, checkpoint=str(checkpoint)).act(state)
    np.testing.assert_allclose(halved, native / 2, atol=1e-6)


def test_wrong_checkpoints_are_refused(checkpoint, tmp_path):
    joints_only = tmp_path / "joints_only.pt"
    saved = torch.load(checkpoint, weights_only=True)
    torch.save({**saved, "state_dim": 6}, joints_only)
    with pytest.raises(ValueError, match="states of size 6.*needs 25"):
        make_base_policy("il", 1, checkpoint=str(joints_only))

    old = tmp_path / "old.pt"
    torch.save({**saved, "version": 0}, old)
    with pytest.raises(ValueError, match="format version 0"):
        make_base_policy("il", 1, checkpoint=str(old))

    residual_like = tmp_path / "residual.pt"
    torch.save({"format": 1, "agent": {}}, residual_like)
    with pytest.raises(ValueError, match="not a BC checkpoint"):
        make_base_policy("il", 1, checkpoint=str(residual_like))

    corrupted = tmp_path / "corrupted.pt"
    corrupted.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(ValueError, match="corrupted"):
        make_base_policy("il", 1, checkpoint=str(corrupted))

    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_base_policy("il", 1, checkpoint=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="needs a BC checkpoint"):
        make_base_policy("il", 1)
    with pytest.raises(SystemExit, match="cannot evaluate.*states of size 6"):
        eval_policy.main(eval_policy.Args(base_policy="il", il_checkpoint=str(joints_only), n_episodes=1))

    # Sizes are checked before the network is built, and the loaded weights and statistics for NaN.
    for change in ({"hidden_size": -1}, {"chunk_size": 1000}):
        torch.save({**saved, **change}, tmp_path / "sizes.pt")
        with pytest.raises(ValueError, match=f"declares {next(iter(change))} .*outside what train_bc.py writes"):
            make_base_policy("il", 1, checkpoint=str(tmp_path / "sizes.pt"))
    for name in ("action_mean", "net.0.weight"):
        model = {**saved["model"], name: saved["model"][name].clone().fill_(float("nan"))}
        torch.save({**saved, "model": model}, tmp_path / "nan.pt")
        with pytest.raises(ValueError, match=f"holds NaN or infinite values \\(in {name}\\); retrain it"):
            make_base_policy("il", 1, checkpoint=str(tmp_path / "nan.pt"))


def test_an_existing_output_is_replaced_only_with_overwrite(dataset, tmp_path):
    output, runs = tmp_path / "bc.pt", tmp_path / "runs"
    output.write_bytes(b"someone's file")
    with pytest.raises(SystemExit, match="--output .*bc.pt already exists; pass --overwrite") as exit_:
        train_bc.main(train_bc.Args(dataset=str(dataset), run_dir=str(runs), output=str(output), **TINY_BC))
    assert exit_.value.code == 2
    assert output.read_bytes() == b"someone's file" and not runs.exists()  # refused before anything was made
    train_bc.main(train_bc.Args(dataset=str(dataset), run_dir=str(runs), output=str(output), overwrite=True, **TINY_BC))
    assert torch.load(output, weights_only=True)["format"] == bc_policy.CHECKPOINT_FORMAT


EPISODE_1 = "data/chunk-000/episode_000001.parquet"
DAMAGED_DATASETS = {
    "NaN action": (lambda root: set_value(root / EPISODE_1, "action", 3, np.nan),
                   r"episode_000001.parquet: column 'action' holds NaN or infinite values, first in episode 1, frame 3;"),
    "infinite joint": (lambda root: set_value(root / EPISODE_1, "observation.state", 5, np.inf),
                       r"column 'observation.state' holds NaN or infinite values, first in episode 1, frame 5;"),
    "NaN environment state": (lambda root: set_value(root / EPISODE_1, "observation.environment_state", 0, np.nan),
                              r"column 'observation.environment_state' holds NaN or infinite values, first in episode 1, frame 0;"),
    "shape info.json lies about": (
        lambda root: edit_json(root / "meta/info.json", lambda info: info["features"]["observation.environment_state"].update(shape=[20])),
        r"column 'observation.environment_state' holds 19 values per frame, but info.json declares shape \[20\]"),
    "NaN act_scale": (lambda root: edit_json(root / "meta/info.json", lambda info: info["so101_sim"].update(act_scale=np.nan)),
                      r"info.json: so101_sim.act_scale is nan, not a number within \(0, 0.2\]"),
    "info.json not JSON": (lambda root: (root / "meta/info.json").write_text("{"), r"meta/info.json cannot be read as JSON"),
    "parquet file not parquet": (lambda root: (root / EPISODE_1).write_bytes(b"PAR1"), r"cannot read .*episode_000001.parquet"),
}


@pytest.mark.parametrize("damage, message", DAMAGED_DATASETS.values(), ids=DAMAGED_DATASETS.keys())
def test_a_damaged_dataset_is_refused_in_one_line_that_says_where(dataset, tmp_path, damage, message):
    damaged = shutil.copytree(dataset, tmp_path / "damaged")
    damage(damaged)
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit, match=message) as exit_:
        train_bc.main(train_bc.Args(dataset=str(damaged), run_dir=str(runs), **TINY_BC))
    assert exit_.value.code == 2 and "\n" not in str(exit_.value)
    assert not runs.exists()  # refused before a run directory (or a checkpoint) was made


def test_a_dataset_of_one_frame_is_refused_rather_than_trained_to_nan(tmp_path):
    writer = DatasetWriter(tmp_path / "one", "radians", 0.02, {})
    writer.add_episode(np.zeros((1, 25)), np.zeros((1, 6)), np.zeros(1), True)
    writer.close()
    with pytest.raises(SystemExit, match="gives 1 training frame.*needs at least 2"):
        train_bc.main(train_bc.Args(dataset=str(tmp_path / "one"), run_dir=str(tmp_path / "runs"), **TINY_BC))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("option, message", [
    ({"seed": -1}, r"--seed must be within \[0, 4294967295\], got -1"),
    ({"chunk_size": 1000, "chunk_steps": 1}, r"--chunk-size must be within \[1, 100\], got 1000"),
    ({"batch_size": 10**6}, r"--batch-size must be within \[1, 65536\], got 1000000"),
    ({"learning_rate": 10.0}, r"--learning-rate must be within \(0.0, 1.0\], got 10.0"),
])
def test_numeric_options_are_refused_out_of_range(tmp_path, option, message):
    with pytest.raises(SystemExit, match=message):
        train_bc.main(train_bc.Args(dataset=str(tmp_path / "none"), run_dir=str(tmp_path / "runs"), **{**TINY_BC, **option}))
    assert not (tmp_path / "runs").exists()


def test_hybrid_blend_is_the_weighted_sum_of_its_members(checkpoint):
    members = [{"name": "il", "weight": 0.5, "checkpoint": str(checkpoint)}, {"name": "jacobian", "weight": 0.3}]
    hybrid = make_base_policy("hybrid", 2, members=members)
    il = make_base_policy("il", 2, checkpoint=str(checkpoint))
    jacobian = make_base_policy("jacobian", 2)
    envs = [SO101PaperSquareEnv() for _ in range(2)]
    states = np.stack([env.reset(seed=i)[0] for i, env in enumerate(envs)])
    for _ in range(5):
        blended = hybrid.act(states)
        np.testing.assert_allclose(blended, 0.5 * il.act(states) + 0.3 * jacobian.act(states), atol=1e-6)
        states = np.stack([env.step(action)[0] for env, action in zip(envs, blended)])

    config = hybrid.config()
    assert config["members"][0] == {"name": "il", "checkpoint": str(checkpoint), "chunk_steps": 2, "weight": 0.5}
    rebuilt = make_base_policy(config.pop("name"), 2, **config)
    hybrid.reset()
    np.testing.assert_allclose(rebuilt.act(states), hybrid.act(states), atol=1e-6)


def test_hybrid_spec_and_base_flags():
    assert parse_hybrid_spec("il:0.5, jacobian:0.5") == [{"name": "il", "weight": 0.5}, {"name": "jacobian", "weight": 0.5}]
    kwargs = base_policy_kwargs("hybrid", "bc.pt", "il:0.7,zero:0.3")
    assert kwargs == {"members": [{"name": "il", "weight": 0.7, "checkpoint": "bc.pt"}, {"name": "zero", "weight": 0.3}]}
    for spec in ("il", "il:x,zero:1"):
        with pytest.raises(ValueError, match="name:weight pairs"):
            parse_hybrid_spec(spec)
    with pytest.raises(ValueError, match="two or more"):
        make_base_policy("hybrid", 1, members=[{"name": "zero", "weight": 1.0}])
    with pytest.raises(ValueError, match="positive weight"):
        make_base_policy("hybrid", 1, members=[{"name": "zero", "weight": 0.0}, {"name": "zero", "weight": 1.0}])
    with pytest.raises(ValueError, match="needs --il-checkpoint"):
        base_policy_kwargs("hybrid", None, "il:0.5,jacobian:0.5")
    with pytest.raises(SystemExit, match="needs --il-checkpoint"):
        ppo.validate_args(ppo.Args(base_policy="il"))
    with pytest.raises(SystemExit, match="missing.pt does not exist"):
        ppo.validate_args(ppo.Args(base_policy="il", il_checkpoint="missing.pt"))
    with pytest.raises(SystemExit, match="needs --hybrid-spec"):
        eval_policy.main(eval_policy.Args(base_policy="hybrid", n_episodes=1))


def test_residual_on_the_il_base_rebuilds_it_from_its_checkpoint(checkpoint, tmp_path):
    tiny = dict(num_envs=2, num_steps=16, total_timesteps=32, num_minibatches=2, update_epochs=1, num_workers=0,
                critic_warmup_iterations=0, eval_every=1, eval_episodes=1, capture_video=False, hidden_size=16)
    run_dir = ppo.main(ppo.Args(run_dir=str(tmp_path), base_policy="il", il_checkpoint=str(checkpoint), **tiny))
    final = run_dir / "checkpoints" / "final.pt"
    assert ppo.load_checkpoint(final)["base_config"]["checkpoint"] == str(checkpoint)
    summaries = eval_policy.main(eval_policy.Args(model_path=str(final), compare_base=True, n_episodes=1))
    assert [s["policy"] for s in summaries] == ["residual+il", "il"]

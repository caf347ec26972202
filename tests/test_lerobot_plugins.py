"""The simulated SO-101 and the task driven by LeRobot's own tools (an optional group: LeRobot 0.6 and the plugin,
requirements-lerobot.txt and pip install -e plugins/lerobot_robot_so101_mujoco; skipped without them).

The commands run in this process through the same `main()` as LeRobot's console scripts (lerobot-record,
lerobot-replay, lerobot-eval, lerobot-train), so plugin discovery, option parsing, the recorder's loop and the
dataset writer are LeRobot's. Nothing here touches a real arm."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import so101_env

lerobot = pytest.importorskip("lerobot", reason="the LeRobot group needs pip install -r requirements-lerobot.txt")
plugin = pytest.importorskip("lerobot_robot_so101_mujoco",
                             reason="the LeRobot group needs pip install -e plugins/lerobot_robot_so101_mujoco")

import deploy  # noqa: E402
import eval_policy  # noqa: E402
import finetune_groot  # noqa: E402
import groot_checkpoint  # noqa: E402
import torch  # noqa: E402
import train_bc  # noqa: E402
from base_policies import make_base_policy  # noqa: E402
from groot_fixtures import checkpoint_dir, one_torch_thread, tokenizer_dir  # noqa: E402, F401 (fixtures)
from lerobot.datasets import LeRobotDataset  # noqa: E402
from lerobot.robots import make_robot_from_config  # noqa: E402
from lerobot.robots.so_follower import SO101Follower, SO101FollowerConfig  # noqa: E402
from lerobot.scripts import lerobot_eval, lerobot_record, lerobot_replay, lerobot_train  # noqa: E402
from lerobot.utils.feature_utils import hw_to_dataset_features  # noqa: E402
from lerobot_dataset import ENVIRONMENT_STATE_NAMES, read_dataset  # noqa: E402
from sim_arm import JOINT_KEYS  # noqa: E402

RESIDUAL = "checkpoints/residual_jacobian_seed1.pt"
TASK = "Slide the sheet of paper into the red tape square."
needs_rendering = pytest.mark.skipif(so101_env._gl_problem is not None, reason=f"no OpenGL here: {so101_env._gl_problem}")


def run_lerobot(monkeypatch, main, *argv: str) -> None:
    """A LeRobot command (its console script's `main`) with these command-line options."""
    monkeypatch.setattr(sys, "argv", [main.__module__, *argv])
    main()


def record(tmp_path_factory, *options: str):
    """Two episodes recorded by lerobot-record from the simulated arm (cameras of 32 px) driven by the scripted
    teleoperator."""
    if so101_env._gl_problem is not None:
        pytest.skip(f"no OpenGL here: {so101_env._gl_problem}")
    root = tmp_path_factory.mktemp("lerobot") / "so101_sim"
    calibration = root.parent / "calibration"
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_lerobot(monkeypatch, lerobot_record.main, "--robot.type=so101_mujoco", "--robot.image_size=32",
                    f"--robot.calibration_dir={calibration}", "--teleop.type=so101_mujoco_expert",
                    f"--teleop.calibration_dir={calibration}", "--dataset.repo_id=local/so101_sim",
                    f"--dataset.root={root}", "--dataset.num_episodes=2", "--dataset.episode_time_s=2",
                    "--dataset.reset_time_s=0", f"--dataset.single_task={TASK}", "--dataset.push_to_hub=false",
                    "--play_sounds=false", *options)
    return root


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """What a real so101_follower records: joints and cameras."""
    return record(tmp_path_factory)


@pytest.fixture(scope="module")
def task_state_recording(tmp_path_factory):
    """With the task state after the joints in observation.state, for the project's BC (a policy trained on it
    needs that state, which lerobot-eval's environment does not give as observation.state: hence two recordings)."""
    return record(tmp_path_factory, "--robot.task_state=true")


def test_the_plugin_registers_a_robot_with_so101_followers_joints(tmp_path):
    robot = make_robot_from_config(plugin.SO101MujocoConfig(calibration_dir=tmp_path))
    assert isinstance(robot, plugin.SO101Mujoco)
    follower = SO101Follower(SO101FollowerConfig(port="/dev/null", calibration_dir=tmp_path))  # never connected
    assert list(robot.action_features) == list(follower.action_features) == list(JOINT_KEYS)
    assert follower.config.use_degrees and robot.config.use_degrees  # the same units by default
    assert robot.observation_features["top_view"] == robot.observation_features["wrist"] == (224, 224, 3)


def test_task_state_follows_the_joints_in_what_the_recorder_writes(tmp_path):
    robot = make_robot_from_config(plugin.SO101MujocoConfig(calibration_dir=tmp_path, camera_names=[], task_state=True))
    assert hw_to_dataset_features(robot.observation_features, "observation")["observation.state"]["names"] == \
        [*JOINT_KEYS, *ENVIRONMENT_STATE_NAMES]
    robot.connect()
    observation = robot.get_observation()
    np.testing.assert_allclose([observation[name] for name in ENVIRONMENT_STATE_NAMES], robot.task_state()[6:], rtol=1e-6)
    robot.disconnect()


def test_lerobot_record_writes_a_dataset_of_the_simulated_arm(recording):
    dataset = LeRobotDataset("local/so101_sim", root=recording)
    assert dataset.meta.info.codebase_version == "v3.0" and dataset.meta.robot_type == "so101_mujoco"
    assert dataset.num_episodes == 2 and dataset.fps == 30
    assert dataset.features["action"]["names"] == dataset.features["observation.state"]["names"] == list(JOINT_KEYS)
    assert dataset.features["observation.images.wrist"]["shape"] == (32, 32, 3)
    frame = dataset[5]
    assert frame["task"] == TASK and frame["observation.images.top_view"].shape == (3, 32, 32)
    # The expert's goals lie within its step (0.02 rad = 1.15 degrees) of the measured joints, in the same units.
    actions = np.stack([dataset[i]["action"].numpy() for i in range(dataset.num_frames)])
    states = np.stack([dataset[i]["observation.state"].numpy() for i in range(dataset.num_frames)])
    assert np.abs(actions - states).max() <= 1.2 and np.abs(actions - states).max() > 0.1


def test_lerobot_replay_plays_an_episode_back_in_the_simulator(recording, monkeypatch, tmp_path):
    robots = []

    def make_and_keep(config):
        robot = make_robot_from_config(config)
        observe = robot.get_observation
        robot.observed = []
        robot.get_observation = lambda: robot.observed.append(observe()) or robot.observed[-1]
        robots.append(robot)
        return robot

    monkeypatch.setattr(lerobot_replay, "make_robot_from_config", make_and_keep)
    run_lerobot(monkeypatch, lerobot_replay.main, "--robot.type=so101_mujoco", "--robot.camera_names=[]",
                f"--robot.calibration_dir={tmp_path}", "--dataset.repo_id=local/so101_sim",
                f"--dataset.root={recording}", "--dataset.episode=0", "--play_sounds=false")
    dataset = LeRobotDataset("local/so101_sim", root=recording, episodes=[0])
    recorded = np.stack([dataset[i]["observation.state"].numpy() for i in range(dataset.num_frames)])
    replayed = np.array([[observation[key] for key in JOINT_KEYS] for observation in robots[0].observed])
    assert len(replayed) == len(recorded)
    np.testing.assert_allclose(replayed, recorded, atol=0.01)  # degrees: the recorded motion, from the same scene


@needs_rendering
def test_lerobot_eval_scores_a_base_as_eval_policy_does(monkeypatch, tmp_path):
    n = 4
    run_lerobot(monkeypatch, lerobot_eval.main, "--env.type=so101_paper", "--env.obs_type=agent_pos",
                "--env.image_size=32", "--policy.type=so101_residual", "--policy.base_policy=jacobian",
                "--policy.device=cpu", f"--eval.n_episodes={n}", "--eval.batch_size=1", "--seed=0",
                f"--output_dir={tmp_path / 'eval'}")
    lerobot_result = json.loads((tmp_path / "eval" / "eval_info.json").read_text())["per_task"][0]["metrics"]
    reference = eval_policy.main(eval_policy.Args(base_policy="jacobian", n_episodes=n, seed=0))[0]["episodes"]
    assert lerobot_result["successes"] == [episode["success"] for episode in reference]
    assert 0 < sum(lerobot_result["successes"]) < n  # successes and failures both: the same episodes, not a floor
    np.testing.assert_allclose(lerobot_result["sum_rewards"], [episode["reward"] for episode in reference], atol=1e-3)


@needs_rendering
def test_a_policy_trained_by_lerobot_on_the_recording_runs_in_lerobot_eval(recording, monkeypatch, tmp_path):
    pytest.importorskip("accelerate", reason="lerobot-train needs lerobot[training]")
    run_lerobot(monkeypatch, lerobot_train.main, "--dataset.repo_id=local/so101_sim", f"--dataset.root={recording}",
                "--policy.type=act", "--policy.device=cpu", "--policy.push_to_hub=false",
                "--policy.pretrained_backbone_weights=null", "--policy.dim_model=32", "--policy.n_heads=2",
                "--policy.dim_feedforward=64", "--policy.n_encoder_layers=1", "--policy.n_decoder_layers=1",
                "--policy.chunk_size=5", "--policy.n_action_steps=5", "--policy.use_vae=false", "--steps=1",
                "--batch_size=2", "--num_workers=0", "--save_freq=1", "--wandb.enable=false",
                f"--output_dir={tmp_path / 'train'}")
    run_lerobot(monkeypatch, lerobot_eval.main, "--env.type=so101_paper", "--env.image_size=32",
                "--env.episode_length=10", f"--policy.path={tmp_path / 'train/checkpoints/last/pretrained_model'}",
                "--policy.device=cpu", "--eval.n_episodes=1", "--eval.batch_size=1", "--seed=0",
                f"--output_dir={tmp_path / 'eval'}")
    result = json.loads((tmp_path / "eval" / "eval_info.json").read_text())["overall"]
    assert result["n_episodes"] == 1 and np.isfinite(result["avg_sum_reward"])


def test_the_project_trains_its_bc_base_on_a_lerobot_recording_and_evaluates_it(task_state_recording, tmp_path):
    demos = read_dataset(task_state_recording)  # the joints' units shown by where they put the gripper tip
    assert demos.units == "degrees" and demos.state_names == [*JOINT_KEYS, *ENVIRONMENT_STATE_NAMES]
    first = demos.episodes[0]["state"][0]  # the scene of episode 0 as the env resets it, joints back in radians
    np.testing.assert_allclose(first, so101_env.SO101PaperSquareEnv().reset(seed=0)[0], atol=1e-5)
    labels = np.concatenate([(e["target"] - e["state"][:, :6]) / 0.02 for e in demos.episodes])
    assert 0.9 < np.abs(labels).max() <= 1.0 + 1e-3  # the expert's steps of at most act_scale, in radians again

    checkpoint = train_bc.main(train_bc.Args(
        dataset=str(task_state_recording), run_dir=str(tmp_path / "runs"), chunk_size=4, chunk_steps=2, hidden_size=32,
        num_hidden_layers=2, num_updates=20, batch_size=32, log_every=10, eval_episodes=0, val_fraction=0.0))
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["state_dim"] == 25 and saved["dataset"]["units"] == "degrees" and saved["dataset"]["robot_type"] == "so101_mujoco"
    episodes = eval_policy.main(eval_policy.Args(base_policy="il", il_checkpoint=str(checkpoint), n_episodes=2))[0]["episodes"]
    assert len(episodes) == 2 and all(np.isfinite(episode["reward"]) for episode in episodes)


def test_the_project_fine_tunes_gr00t_on_a_lerobot_recording(task_state_recording, checkpoint_dir, tokenizer_dir, tmp_path):
    output = finetune_groot.main(finetune_groot.Args(
        dataset=[str(task_state_recording)], init_from=str(checkpoint_dir), tokenizer=str(tokenizer_dir),
        output_dir=str(tmp_path / "checkpoint"), run_dir=str(tmp_path / "runs"), max_steps=2, batch_size=2, torch_threads=1))
    metadata = groot_checkpoint.load_metadata(output)
    assert metadata.joint_units == "degrees" and list(metadata.video) == ["front", "wrist"]
    joints = LeRobotDataset("local/so101_sim", root=task_state_recording).hf_dataset["observation.state"]
    joints = np.stack([np.asarray(state[:6]) for state in joints])  # GR00T sees the six joints, not the task state
    assert {name: len(stats["min"]) for name, stats in metadata.state.items()} == {"single_arm": 5, "gripper": 1}
    np.testing.assert_allclose(metadata.state["single_arm"]["max"], joints[:, :5].max(0), rtol=1e-6)
    base = make_base_policy("groot", 1, checkpoint=str(output), device="cpu", seed=0)
    env = so101_env.SO101PaperSquareEnv(image_size=32)
    base.reset()
    action = base.act(env.reset(seed=0)[0][None], {camera: frame[None] for camera, frame in env.render_cameras().items()})
    assert base.units == "degrees" and action.shape == (1, 6) and np.isfinite(action).all()


def test_deploy_runs_a_residual_on_the_lerobot_robot(capsys, tmp_path):
    assert deploy.main(["--model-path", RESIDUAL, "--episodes", "1", "--no-realtime", "--robot.type=so101_mujoco",
                        "--robot.camera_names=[]", f"--robot.calibration_dir={tmp_path}"]) == 0
    assert "episode 0 (seed 0): success" in capsys.readouterr().out


def test_deploy_refuses_a_state_policy_on_the_real_follower_before_connecting(tmp_path):
    with pytest.raises(deploy.BadInput, match="cannot observe.*tracked sheet pose"):
        deploy.main(["--base-policy", "jacobian", "--robot.type=so101_follower", "--robot.port=/dev/null",
                     f"--robot.calibration_dir={tmp_path}"])

"""deploy.py and the simulated arm (sim_arm.py), without LeRobot: the simulated arm runs a checkpoint as
eval_policy.py does, and deploy's safety (limits, dry run, refusals, Ctrl-C hold) is checked on a test double of
a LeRobot SO-101 robot that records what it is sent. tests/test_lerobot_plugins.py drives LeRobot's own tools."""

from __future__ import annotations

import importlib.util
import math
import pathlib
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import deploy
import eval_policy
import so101_env
from command_line import BadInput
from joint_units import joint_ranges
from sim_arm import JOINT_KEYS, SimulatedArm, joints_from_dict
from so101_env import SO101PaperSquareEnv

ROOT = pathlib.Path(deploy.__file__).resolve().parent
RESIDUAL = "checkpoints/residual_jacobian_seed1.pt"
HOME_DEGREES = dict(zip(JOINT_KEYS, [0.0, -26.9, 33.2, 83.1, 0.0, 9.1]))
needs_rendering = pytest.mark.skipif(so101_env._gl_problem is not None, reason=f"no OpenGL here: {so101_env._gl_problem}")


class FakeArm:
    """A test double of a LeRobot SO-101 robot (so101_follower's interface): it reports `present` joint positions
    in degrees, records what it is sent, and raises KeyboardInterrupt at its `interrupt_at`-th observation."""

    name = "fake_so101"

    def __init__(self, present: dict = HOME_DEGREES, calibrated: bool = True, calibration: dict | None = None,
                 interrupt_at: int | None = None, action_keys=JOINT_KEYS, use_degrees: bool | None = True):
        self.config = SimpleNamespace(disable_torque_on_disconnect=False)
        if use_degrees is not None:
            self.config.use_degrees = use_degrees
        self.present, self.is_calibrated, self.calibration = dict(present), calibrated, calibration or {}
        self.interrupt_at, self.observations = interrupt_at, 0
        self.observation_features = dict.fromkeys(JOINT_KEYS, float)
        self.action_features = dict.fromkeys(action_keys, float)
        self.sent, self.calls = [], []

    def connect(self, calibrate: bool = True):
        self.calls.append(("connect", calibrate))

    def get_observation(self) -> dict:
        self.observations += 1
        if self.observations == self.interrupt_at:
            raise KeyboardInterrupt
        return dict(self.present)

    def send_action(self, action: dict) -> dict:
        self.sent.append(dict(action))
        return action

    def disconnect(self):
        self.calls.append(("disconnect",))


class PushingPolicy:
    """A test double of a base that reads only joints (as zero and groot) and asks every joint to move by `push`."""

    name, needs_images = "zero", False

    def __init__(self, push: float, act_scale: float = 0.02):
        self.push, self.act_scale = push, act_scale

    def reset(self, mask=None):
        pass

    def images_needed(self):
        return np.zeros(1, dtype=bool)

    def act(self, states, images=None):
        assert np.isfinite(states[:, deploy.QPOS]).all()
        return np.full((1, 6), self.push, dtype=np.float32)


def run(robot, policy=None, **options) -> int:
    args = deploy.Args(base_policy="zero", **options)
    deploy.check_args(args)
    return deploy.run(args, policy or PushingPolicy(0.0), robot)


# ---------------------------------------------------------------------- the simulated arm
def test_the_simulated_arm_reports_lerobot_so101_units():
    arm = SimulatedArm(cameras=())
    arm.connect()
    q = arm.joint_positions()
    observation = arm.get_observation()
    assert list(observation) == list(JOINT_KEYS)
    np.testing.assert_allclose([observation[key] for key in JOINT_KEYS[:5]], np.degrees(q[:5]))
    low, high = joint_ranges()
    assert observation["gripper.pos"] == pytest.approx(100 * (q[5] - low[5]) / (high[5] - low[5]))
    np.testing.assert_allclose(joints_from_dict(observation, "degrees"), q)
    ranged = SimulatedArm(use_degrees=False, cameras=())
    ranged.connect()
    assert ranged.get_observation()["shoulder_pan.pos"] == pytest.approx(200 * (q[0] - low[0]) / (high[0] - low[0]) - 100)


def test_the_simulated_arm_holds_goals_within_its_joint_ranges_and_max_relative_target():
    arm = SimulatedArm(cameras=(), max_relative_target=5.0)
    arm.connect()
    present = arm.get_observation()
    sent = arm.send_action({key: value + 50.0 for key, value in present.items()})
    assert all(sent[key] == pytest.approx(present[key] + 5.0) for key in JOINT_KEYS)
    free = SimulatedArm(cameras=())
    free.connect()
    np.testing.assert_allclose(joints_from_dict(free.send_action(dict.fromkeys(JOINT_KEYS, 1000.0)), "degrees"),
                               joint_ranges()[1])
    with pytest.raises(ValueError, match="lack.*wrist_roll.pos"):
        free.send_action({key: 0.0 for key in JOINT_KEYS if key != "wrist_roll.pos"})
    with pytest.raises(ValueError, match="finite"):
        free.send_action(dict.fromkeys(JOINT_KEYS, math.nan))


def test_the_simulated_scene_starts_the_next_seeded_episode_when_one_ends():
    arm = SimulatedArm(cameras=(), seed=7, episode_steps=3)
    arm.connect()
    for _ in range(3):
        arm.send_action(arm.get_observation())
    assert arm.episode == 1
    assert arm.finished_episodes == [{"seed": 7, "success": False, "steps": 3,
                                      "final_distance": arm.finished_episodes[0]["final_distance"]}]
    reference, _ = SO101PaperSquareEnv().reset(seed=8)
    np.testing.assert_array_equal(arm.task_state(), reference)


@needs_rendering
def test_the_simulated_arm_renders_its_cameras():
    arm = SimulatedArm(image_size=32)
    arm.connect()
    observation = arm.get_observation()
    assert arm.observation_features["wrist"] == (32, 32, 3)
    assert observation["top_view"].shape == observation["wrist"].shape == (32, 32, 3)
    assert observation["top_view"].dtype == np.uint8 and observation["top_view"].std() > 0


# ---------------------------------------------------------------------- deploy on the simulated arm
def test_deploy_runs_a_residual_on_the_simulated_arm_as_eval_policy_does(capsys):
    args = deploy.Args(model_path=RESIDUAL, episodes=2, realtime=False)
    arm = SimulatedArm(cameras=(), seed=3)
    assert deploy.run(args, deploy.build_policy(args), arm) == 0
    reference = eval_policy.main(eval_policy.Args(model_path=RESIDUAL, n_episodes=2, seed=3))[0]["episodes"]
    assert [(e["seed"], e["success"], e["steps"]) for e in arm.finished_episodes] == \
        [(e["seed"], e["success"], e["length"]) for e in reference]
    np.testing.assert_allclose([e["final_distance"] for e in arm.finished_episodes],
                               [e["final_distance"] for e in reference], atol=1e-6)
    assert "episode 1 (seed 4): success" in capsys.readouterr().out


# ---------------------------------------------------------------------- safety
def test_dry_run_reads_the_robot_and_sends_nothing(capsys):
    robot = FakeArm()
    assert run(robot, PushingPolicy(1.0), dry_run=True, max_steps=3) == 0
    assert robot.sent == [] and robot.calls == [("connect", False), ("disconnect",)]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert len(lines) == 3 and "shoulder_pan.pos=+1.15" in lines[0]  # 0.02 rad: the policy's step, printed


def test_goals_stay_within_the_step_limit_and_the_joint_ranges(capsys):
    robot = FakeArm()
    assert run(robot, PushingPolicy(1.0, act_scale=0.5), max_steps=2, max_step_deg=3.0) == 0
    assert "clips it" in capsys.readouterr().out
    for goal in robot.sent[:2]:
        assert all(goal[key] == pytest.approx(HOME_DEGREES[key] + 3.0) for key in JOINT_KEYS)
    near_limit = FakeArm(present=HOME_DEGREES | {"wrist_flex.pos": 94.0})
    run(near_limit, PushingPolicy(1.0), max_steps=1, joint_margin_deg=2.0)
    assert near_limit.sent[0]["wrist_flex.pos"] == pytest.approx(math.degrees(joint_ranges()[1][3]) - 2.0)


def test_ctrl_c_holds_the_arm_where_it_is_and_exits_130():
    robot = FakeArm(interrupt_at=4)  # the first observation is the pre-flight check, then three steps
    assert run(robot, PushingPolicy(0.5)) == 130
    assert len(robot.sent) == 3  # two steps, then the hold
    assert robot.sent[-1] == pytest.approx(HOME_DEGREES)
    assert robot.calls[-1] == ("disconnect",)


@pytest.mark.parametrize("robot, message", [
    (FakeArm(action_keys=("x.pos",)), "not the SO-101's joint positions"),
    (FakeArm(use_degrees=None), "cannot tell the joint units"),
    (FakeArm(calibrated=False), "not calibrated: run lerobot-calibrate"),
    (FakeArm(calibration={"elbow_flex": SimpleNamespace(range_min=1000, range_max=2600)}), "elbow_flex's calibrated range"),
    (FakeArm(present=HOME_DEGREES | {"wrist_flex.pos": 150.0}), "outside the model's ranges"),
], ids=["other-joints", "unknown-units", "uncalibrated", "calibration-elsewhere", "outside-ranges"])
def test_a_robot_whose_joints_are_not_the_models_is_refused_before_anything_is_sent(robot, message, capsys):
    with pytest.raises(BadInput, match=message):
        run(robot, PushingPolicy(1.0), max_steps=3)
    assert robot.sent == []


def test_a_calibration_that_matches_the_model_is_accepted():
    low, high = (np.degrees(bound) for bound in joint_ranges())
    ticks = (high[2] - low[2]) * (deploy.ENCODER_STEPS - 1) / 360
    robot = FakeArm(calibration={"elbow_flex": SimpleNamespace(range_min=2048 - ticks / 2, range_max=2048 + ticks / 2)})
    assert run(robot, max_steps=1) == 0


def test_a_policy_that_reads_the_papers_pose_is_refused_on_a_real_arm():
    args = deploy.Args(model_path=RESIDUAL)
    with pytest.raises(BadInput, match="paper's pose.*tracked sheet pose.*--base-policy groot"):
        deploy.run(args, deploy.build_policy(args), FakeArm())
    with pytest.raises(BadInput, match="--no-realtime runs only the simulated arm"):
        deploy.run(deploy.Args(base_policy="zero", realtime=False), PushingPolicy(0.0), FakeArm())


def test_lerobot_options_are_written_with_an_equals_sign():
    assert deploy.split_robot_options(["--dry-run", "--robot.type=so101_mujoco"]) == (["--dry-run"], ["--robot.type=so101_mujoco"])
    with pytest.raises(BadInput, match="--robot.port=VALUE"):
        deploy.split_robot_options(["--robot.port", "/dev/ttyACM0"])


@pytest.mark.skipif(importlib.util.find_spec("lerobot") is not None, reason="LeRobot is installed here")
def test_without_lerobot_deploy_says_what_to_install():
    run = subprocess.run([sys.executable, "deploy.py", "--base-policy", "zero", "--robot.type=so101_follower"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("error: deploy.py drives LeRobot robots: pip install -r "
                                                          "requirements-lerobot.txt")

"""Run a base policy, or a trained residual on its base, on a LeRobot robot: the simulated SO-101 (so101_mujoco)
or the real one (so101_follower), at the policy rate (30 Hz).

    python deploy.py --model-path checkpoints/residual_jacobian_seed1.pt --episodes 3 --robot.type=so101_mujoco
    python deploy.py --base-policy groot --dry-run --robot.type=so101_follower --robot.port=/dev/ttyACM0 \
        --robot.id=my_follower --robot.disable_torque_on_disconnect=false \
        --robot.cameras="{top_view: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30}, wrist: {type: opencv, index_or_path: 1, width: 640, height: 480, fps: 30}}"

The --robot.* options are LeRobot's (as lerobot-record takes them, written with "="); the others are this
script's. LeRobot and the simulated arm's plugin come from requirements-lerobot.txt (docs/lerobot.md).

Each step reads the robot's joints (and cameras), builds the observation the policy was trained on, and sends
`present joints + act_scale * action` as the joints' goals, in the robot's units (LeRobot's SO-101 degrees, or
its [-100, 100] range). Safety first:
  - refused before anything moves: a robot without the SO-101's joints, of unknown units, not calibrated, whose
    calibration puts the joints' zero elsewhere than the model's (its ranges of motion differ from the model's),
    or whose present pose lies outside the model's joint ranges; a policy that needs what the robot cannot see;
  - every goal stays --joint-margin-deg inside the model's joint ranges and --max-step-deg from the present
    position (the project's policies move at most 0.02 rad = 1.15 degrees a step);
  - --dry-run prints the goals and sends nothing;
  - Ctrl-C (or SIGTERM) stops at once: the arm is told to hold its present position, then disconnected.

What a real arm can observe: joints and cameras. The residuals, and the jacobian, il and hybrid bases, read the
task's state: the paper's pose (position and quaternion) and the paper-to-goal vector, which only the simulator
knows. On a real arm they are refused; running them needs a tracked sheet pose in the robot's frame (a camera-
based tracker, not part of this project) or a residual trained on what a real robot observes (joints and
cameras), the next step. What runs on a real arm today: the GR00T base (joints and cameras) and zero.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import tyro

from base_policies import QPOS, QVEL, ResidualPolicy, base_policy_kwargs, make_base_policy
from command_line import MAX_SEED, BadInput, device_problems, option_problems, refuse
from groot_base import GrootOptions  # importing it registers the groot base
from joint_units import joint_ranges
from residual_policy import load_residual
from sim_arm import JOINT_KEYS, joint_distance_radians, joints_from_dict, joints_to_dict, lerobot_units, limit_targets
from so101_env import JOINT_NAMES, POLICY_HZ, STATE_DIM
from stop_signals import StopSignals

STATE_FREE_BASES = ("zero", "groot")
"""bases that read only joints and cameras: they run on any SO-101; the others, and every residual, read the
paper's pose from the task state"""
FULL_TURN_JOINTS = ("wrist_roll", "gripper")
"""LeRobot calibrates these by convention (wrist_roll over a full turn, the gripper to 0-100 of its range), so
their recorded range says nothing about where their zero lies"""
ENCODER_STEPS = 4096
"""steps per turn of the SO-101's STS3215 servos, whose ticks a LeRobot calibration records"""


@dataclass
class Args:
    model_path: str | None = None
    """residual checkpoint (best.pt / final.pt of a training run) to run on its base"""
    base_policy: Literal["zero", "jacobian", "il", "hybrid", "groot"] | None = None
    """base policy to run alone (instead of --model-path)"""
    il_checkpoint: str | None = None
    """BC checkpoint (train_bc.py) of an il base, also used by il members of a hybrid base"""
    hybrid_spec: str | None = None
    """members of a hybrid base as name:weight pairs, e.g. "il:0.5,jacobian:0.5" """
    dry_run: bool = False
    """print each step's joint goals and send nothing (the robot is connected and read, never commanded)"""
    max_step_deg: float = 2.0
    """the most a joint goal may lie from the joint's present position, in degrees (the gripper: percent of its range)"""
    joint_margin_deg: float = 2.0
    """joint goals stay this far inside the model's joint ranges, in degrees (the gripper: percent of its range)"""
    calibration_tolerance_deg: float = 10.0
    """refuse a robot whose calibrated ranges of motion put a joint's zero further than this from the model's
    (half the difference of the range widths), or whose present pose lies further than this outside the model's ranges"""
    max_steps: int | None = None
    """stop after this many steps (1/30 s each); default: run until Ctrl-C (or --episodes)"""
    episodes: int | None = None
    """on the simulated arm: stop after this many task episodes (each ends on success or at its step limit)"""
    realtime: bool = True
    """hold the policy rate, 30 Hz; --no-realtime runs the simulated arm as fast as it computes (its clock is the
    simulation's), and is refused on a real arm"""
    seed: int = 0
    """seed of a GR00T base's flow noise"""
    device: str = "cpu"
    """torch device of a local GR00T model"""
    groot: GrootOptions = field(default_factory=GrootOptions.unset)
    """the groot base: with --base-policy groot, each option not given takes its default; under a residual checkpoint,
    the setting it was trained with, except a server or a checkpoint to download, which are used only when named here"""


# ---------------------------------------------------------------------- the command line
def split_robot_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """(this script's options, LeRobot's --robot.* options). LeRobot's must be written --robot.name=value."""
    robot = [token for token in argv if token.startswith("--robot.")]
    bare = [token for token in robot if "=" not in token]
    if bare:
        raise BadInput(f"write LeRobot's robot options with '=', e.g. {bare[0]}=VALUE")
    return [token for token in argv if not token.startswith("--robot.")], robot


def check_args(args: Args) -> None:
    """Every option checked before anything is loaded or connected: one line per problem, exit status 2."""
    problems = option_problems(args, within=dict(max_step_deg=(0.01, 30.0), joint_margin_deg=(0.0, 30.0),
                                                 calibration_tolerance_deg=(0.0, 90.0), seed=(0, MAX_SEED)),
                               at_least=dict(max_steps=1, episodes=1))
    if (args.model_path is None) == (args.base_policy is None):
        problems.append("name what to run: --model-path CHECKPOINT (a residual on its base) or --base-policy NAME")
    refuse(problems + args.groot.problems() + device_problems(args.device))


def build_policy(args: Args):
    """The residual on its base, or the base alone, for one robot; refused (BadInput) before the robot is touched."""
    try:
        if args.model_path is not None:
            return load_residual(args.model_path, args.groot, args.device, args.seed, "deploy it")
        kwargs = base_policy_kwargs(args.base_policy, args.il_checkpoint, args.hybrid_spec)
        if args.base_policy == "groot":
            args.groot.check_checkpoint()
            kwargs |= args.groot.base_kwargs() | {"device": args.device, "seed": args.seed}
        return make_base_policy(args.base_policy, num_envs=1, **kwargs)
    except (FileNotFoundError, ValueError) as error:
        raise BadInput(f"cannot deploy: {error}") from None


def make_robot(robot_argv: list[str]):
    """The LeRobot robot that --robot.type=... names (LeRobot's own robots and the installed plugins)."""
    if not robot_argv:
        raise BadInput("name the robot with LeRobot's options: --robot.type=so101_mujoco (the simulated arm), or "
                       "--robot.type=so101_follower --robot.port=PORT --robot.id=NAME --robot.cameras=... (the real one)")
    try:
        import draccus
        from lerobot.robots import RobotConfig, make_robot_from_config
        from lerobot.robots import so_follower  # noqa: F401  registers so100_follower and so101_follower
        from lerobot.utils.import_utils import register_third_party_plugins
    except ImportError:
        raise BadInput("deploy.py drives LeRobot robots: pip install -r requirements-lerobot.txt and "
                       "pip install -e plugins/lerobot_robot_so101_mujoco (docs/lerobot.md)") from None
    register_third_party_plugins()
    # Parsed as lerobot-record parses its --robot.* options: a field `robot` of LeRobot's RobotConfig choices.
    options = draccus.parse(dataclasses.make_dataclass("RobotOptions", [("robot", RobotConfig)]), args=robot_argv)
    return make_robot_from_config(options.robot)


# ---------------------------------------------------------------------- checks before anything moves
def robot_units(robot) -> str:
    """The joint units of a LeRobot SO-101 robot: its `use_degrees` option (so101_follower, so101_mujoco), or the
    `units` that the simulated arm names. ValueError when neither says."""
    config = getattr(robot, "config", None)
    if isinstance(getattr(config, "use_degrees", None), bool):
        return lerobot_units(config.use_degrees)
    if getattr(robot, "units", None) in ("degrees", "range"):
        return robot.units
    raise ValueError(f"cannot tell the joint units of the {getattr(robot, 'name', type(robot).__name__)} robot: it "
                     f"has no use_degrees option; deploy.py runs SO-101 arms of LeRobot's units (degrees or range)")


def reads_task_state(policy) -> bool:
    """Whether `policy` reads more of the state than joint positions and velocities (the paper's pose)."""
    return isinstance(policy, ResidualPolicy) or policy.name not in STATE_FREE_BASES


def needed_cameras(policy) -> list[str]:
    """The robot cameras that `policy` reads: the sim camera names of its GR00T base's camera map."""
    base = policy.base if isinstance(policy, ResidualPolicy) else policy
    return sorted(set(getattr(base, "camera_map", {}).values())) if base.needs_images else []


def robot_problems(robot, policy) -> list[str]:
    """What makes `robot` unfit for `policy`, known before connecting."""
    name = getattr(robot, "name", type(robot).__name__)
    if set(robot.action_features) != set(JOINT_KEYS):
        return [f"the {name} robot takes the actions {sorted(robot.action_features)}, not the SO-101's joint "
                f"positions {list(JOINT_KEYS)}"]
    problems = []
    try:
        robot_units(robot)
    except ValueError as error:
        problems.append(str(error))
    if reads_task_state(policy) and not hasattr(robot, "task_state"):
        problems.append(
            f"the {policy.name} policy reads the paper's pose (the task state it was trained on), which the {name} "
            f"robot cannot observe: a real arm needs a tracked sheet pose in its frame (not part of this project) "
            f"or a residual trained on joints and cameras (the next step); on a real arm run --base-policy groot")
    missing = [camera for camera in needed_cameras(policy) if camera not in robot.observation_features]
    if missing:
        problems.append(f"the {policy.name} policy sees the cameras {needed_cameras(policy)}; the {name} robot has no "
                        f"{missing}: name its cameras so (--robot.cameras=\"{{top_view: {{...}}, wrist: {{...}}}}\")")
    return problems


def calibration_problems(robot, units: str, present: np.ndarray, tolerance_deg: float) -> list[str]:
    """What says that the connected robot's joints are not the model's: not calibrated, a calibrated range of
    motion whose middle (LeRobot's zero) lies elsewhere than the model's, a present pose outside the model's ranges."""
    name = getattr(robot, "name", type(robot).__name__)
    if not robot.is_calibrated:
        return [f"the {name} robot is not calibrated: run lerobot-calibrate with its --robot.type and --robot.id first"]
    problems = []
    low, high = (np.degrees(bound) for bound in joint_ranges())
    for index, joint in enumerate(JOINT_NAMES):
        motor = getattr(robot, "calibration", {}).get(joint)
        if motor is None or joint in FULL_TURN_JOINTS:
            continue
        width = (motor.range_max - motor.range_min) * 360 / (ENCODER_STEPS - 1)
        offset = abs(width - (high[index] - low[index])) / 2
        if offset > tolerance_deg:
            problems.append(f"{joint}'s calibrated range of motion spans {width:.0f} degrees, the model's "
                            f"{high[index] - low[index]:.0f}: its zero (the middle of the range) may lie {offset:.0f} "
                            f"degrees from the model's; calibrate again, moving the joint through its whole range")
    margin = math.radians(tolerance_deg)
    low_rad, high_rad = joint_ranges()
    outside = [f"{joint} at {value:.1f}" for joint, q, value, lo, hi in
               zip(JOINT_NAMES, present, joints_to_dict(present, units).values(), low_rad, high_rad)
               if not lo - margin <= q <= hi + margin]
    if outside:
        problems.append(f"the {name} robot reports joints outside the model's ranges ({', '.join(outside)} {units}): "
                        f"its units or calibration are not the ones the policy was trained in")
    return problems


# ---------------------------------------------------------------------- the loop
def observed_state(robot, q: np.ndarray, previous_q: np.ndarray | None, reads_state: bool) -> np.ndarray:
    """The 25-float state the policy reads: the simulator's own (`task_state`) where the policy reads the paper's
    pose; else the joints, their velocities estimated from the last step, and NaN for what is not observed (the
    policies that run here never read it, and NaN would show at once if one did)."""
    if reads_state:
        return robot.task_state()
    state = np.full(STATE_DIM, np.nan, dtype=np.float32)
    state[QPOS] = q
    state[QVEL] = 0.0 if previous_q is None else (q - previous_q) * POLICY_HZ
    return state


def hold(robot, units: str) -> None:
    """Tell the arm to stay where it is: its present joint positions as its goals."""
    present = joints_from_dict(robot.get_observation(), units)
    robot.send_action(joints_to_dict(present, units))


def run(args: Args, policy, robot) -> int:
    """Connect `robot`, check it, run `policy` on it until --max-steps, --episodes or a stop; hold and disconnect.
    Returns the exit status: 0, or 130 / 143 after Ctrl-C / SIGTERM."""
    refuse(robot_problems(robot, policy))
    simulated = getattr(robot, "simulated", False)
    if not args.realtime and not simulated:
        raise BadInput("--no-realtime runs only the simulated arm: a real arm moves in real time")
    if args.episodes is not None and not simulated:
        raise BadInput("--episodes counts the simulated arm's task episodes; on a real arm use --max-steps or Ctrl-C")
    units = robot_units(robot)
    low, high = joint_ranges()
    margin = joint_distance_radians(args.joint_margin_deg, "degrees")
    max_step = joint_distance_radians(args.max_step_deg, "degrees")
    if policy.act_scale > max_step.min():
        print(f"warning: the {policy.name} policy moves joints up to {math.degrees(policy.act_scale):.2f} degrees a step; "
              f"--max-step-deg {args.max_step_deg} clips it", flush=True)
    if getattr(getattr(robot, "config", None), "disable_torque_on_disconnect", False):
        print("note: on a stop the arm holds its pose, then goes limp when deploy.py disconnects it "
              "(--robot.disable_torque_on_disconnect=false keeps it holding)", flush=True)
    stop = StopSignals()
    try:
        robot.connect(calibrate=False)  # a calibration asks questions: run lerobot-calibrate beforehand
    except (ConnectionError, OSError) as error:  # a port, a camera that is not there
        raise SystemExit(f"error: cannot connect the {getattr(robot, 'name', 'robot')} robot: {' '.join(str(error).split())}")
    status, step, sent = 0, 0, False
    try:
        present = joints_from_dict(robot.get_observation(), units)
        refuse(calibration_problems(robot, units, present, args.calibration_tolerance_deg))
        reads_state, episode, previous_q = reads_task_state(policy), getattr(robot, "episode", 0), None
        print(f"deploying {policy.name} on the {getattr(robot, 'name', 'robot')} robot at {POLICY_HZ} Hz"
              f"{' (dry run: nothing is sent)' if args.dry_run else ''}; Ctrl-C stops and holds the arm", flush=True)
        policy.reset()
        while args.max_steps is None or step < args.max_steps:
            start = time.perf_counter()
            observation = robot.get_observation()
            q = joints_from_dict(observation, units)
            state = observed_state(robot, q, previous_q, reads_state)
            images = None
            if policy.images_needed().any():
                images = {camera: observation[camera][None] for camera in needed_cameras(policy)}
            action = policy.act(state[None], images)[0]
            goal = limit_targets(q + policy.act_scale * action, q, low + margin, high - margin, max_step)
            command = joints_to_dict(goal, units)
            if args.dry_run:
                print(f"step {step}: " + " ".join(f"{key}={value:+.2f}" for key, value in command.items()), flush=True)
            else:
                robot.send_action(command)
                sent = True
            step, previous_q = step + 1, q
            if getattr(robot, "episode", episode) != episode:  # the simulated scene started its next episode
                result = robot.finished_episodes[-1]
                print(f"episode {episode} (seed {result['seed']}): {'success' if result['success'] else 'no success'} "
                      f"after {result['steps']} steps, paper {100 * result['final_distance']:.1f} cm from the square's "
                      f"centre", flush=True)
                episode = robot.episode
                policy.reset()
                if args.episodes is not None and len(robot.finished_episodes) >= args.episodes:
                    break
            if args.realtime:
                time.sleep(max(0.0, start + 1 / POLICY_HZ - time.perf_counter()))
    except KeyboardInterrupt:
        status = stop.exit_status
        print(f"\nstopped after {step} steps", flush=True)
    finally:
        if sent:
            try:
                hold(robot, units)
                print("the arm holds its present position", flush=True)
            except Exception as error:  # a robot that stopped answering: say so, and still disconnect it
                print(f"warning: could not tell the arm to hold ({error}); it keeps its last goal", file=sys.stderr)
        robot.disconnect()
    return status


def main(argv: list[str]) -> int:
    tyro_argv, robot_argv = split_robot_options(argv)
    args = tyro.cli(Args, args=tyro_argv)
    check_args(args)
    policy = build_policy(args)
    return run(args, policy, make_robot(robot_argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

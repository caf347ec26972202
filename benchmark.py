"""Throughput of the SO-101 paper-square project, measured side by side in one run.

    python benchmark.py --only env                   # env step rate against the raw MuJoCo limit
    pip install -r requirements-bench.txt
    python benchmark.py --output BENCHMARKS.md       # everything, including Stable-Baselines3 (--overwrite: replace it)
    python benchmark.py --only time95 --our-runs runs/<run> ...   # minutes to 95 % success, ours and SB3's
    python benchmark.py --only groot                 # the GR00T trainer against the Jacobian one, side by side

Sections (each prints as it finishes; --output writes them all as Markdown):
  env      raw mj_step rate of the scene (no Python in the loop) and one SO101PaperSquareEnv's
           step rate, both with the arm holding its home pose so the physics is the same; the
           ceiling for one env is raw / 12 physics steps per policy step. Timed in alternating
           rounds on the same core; the median round is reported.
  vector   env steps/s of gymnasium's Sync and Async vector envs for 1, 2, 4 and 8 envs.
  render   milliseconds per dual-camera frame (top view | wrist) at 224 x 224 per camera.
  time95   minutes and env steps until a 100-episode evaluation first reaches 95 % success:
           read off ppo_residual_jacobian.py runs made with --eval-episodes 100 (--our-runs), and
           measured for Stable-Baselines3 PPO (SubprocVecEnv, the same settings, alpha 0.5 from the
           start, final square) evaluated on the same 100 episodes every 10 iterations.
  groot    what a GR00T base costs: ppo_residual_groot.py and ppo_residual_jacobian.py with their
           default settings (no evaluation), the same steps each, in interleaved rounds: env
           steps/s, seconds of rollout and PPO update per iteration, and the GR00T model's calls
           per iteration, envs per call and seconds per call.
  train    training throughput of ppo_residual_jacobian.py against Stable-Baselines3 PPO (with
           its SubprocVecEnv and its DummyVecEnv) on the same residual task (Jacobian base,
           alpha 0.5), with the same number of envs, rollout length, minibatch size, epochs,
           network and torch threads, in interleaved rounds; then where a rollout's time goes
           (the physics floor: the rollout's env steps replayed with no inference and no
           communication) and a profile of one training iteration.
"""

from __future__ import annotations

import io
import os
import pathlib
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import so101_env  # noqa: I001  first: it picks the headless OpenGL backend before mujoco loads

import gymnasium as gym
import mujoco
import numpy as np
import torch
import tyro

from base_policies import ResidualPolicy, compose_action, make_base_policy
from command_line import MAX_SEED, option_problems, refuse
from output_files import output_problems, write_atomically
from so101_env import PHYSICS_STEPS_PER_POLICY, SO101PaperSquareEnv

# The PPO settings both trainers get: ppo_residual_jacobian.py's defaults, passed explicitly so the
# comparison never depends on reading the script.
PPO_SETTINGS = dict(num_steps=256, num_minibatches=32, update_epochs=10, learning_rate=3e-4, gamma=0.99, gae_lambda=0.95,
                    clip_coef=0.2, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5, hidden_size=256, residual_log_std=-1.0,
                    alpha=0.5, residual_penalty=0.001, torch_threads=1)


ROOT = pathlib.Path(__file__).resolve().parent


@dataclass
class Args:
    only: tuple[str, ...] = ("env", "vector", "render", "train")
    """sections to run: env, vector, render, train, groot, time95"""
    seconds: float = 2.0
    """approximate seconds per measurement round"""
    rounds: int = 5
    """alternating rounds per env measurement; the median is reported"""
    train_steps: int = 24_576
    """environment steps per trainer in the training comparison (12 PPO iterations)"""
    train_rounds: int = 2
    """interleaved rounds of the training comparison (each trainer once per round)"""
    num_envs: int = 8
    """environments in the training comparison"""
    our_runs: tuple[str, ...] = ()
    """time95: run directories of ppo_residual_jacobian.py trained with --eval-episodes 100"""
    sb3_seeds: tuple[int, ...] = (1,)
    """time95: Stable-Baselines3 seeds to train (empty: none)"""
    target_success: float = 0.95
    """time95: the evaluation success that counts as a working policy"""
    sb3_max_steps: int = 500_000
    """time95: give up on an SB3 run after this many env steps"""
    output: str | None = None
    """write the results as Markdown to this file (e.g. BENCHMARKS.md)"""
    overwrite: bool = False
    """replace the file at --output if there is one (without it, such a run is refused before measuring)"""


# ---------------------------------------------------------------------------- env
def raw_step_rate(env: SO101PaperSquareEnv, seconds: float) -> float:
    """Physics steps per second of the env's own model, arm holding its home pose."""
    m, d = env.model, env.data
    env.reset(seed=0)
    d.ctrl[:] = env.home_qpos
    batch = 3600
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        mujoco.mj_step(m, d, nstep=batch)
        steps += batch
    return steps / (time.perf_counter() - start)


def env_step_rate(env, seconds: float, num_envs: int = 0, action_range: float = 0.3) -> float:
    """Steps per second (env steps, summed over envs) under random actions in +-action_range."""
    shape = (num_envs, 6) if num_envs else (6,)
    actions = np.random.default_rng(0).uniform(-action_range, action_range, size=(256, *shape))
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if not num_envs and (terminated or truncated):
                env.reset()
        steps += len(actions) * max(num_envs, 1)
    return steps / (time.perf_counter() - start)


def bench_env(args: Args) -> list[str]:
    env = SO101PaperSquareEnv()
    raw, stepped = [], []
    for _ in range(args.rounds):
        raw.append(raw_step_rate(env, args.seconds))
        # Zero actions: the arm holds its pose as in the raw measurement, so both integrate the
        # same physics (same contacts) and the difference is the env's own overhead.
        stepped.append(env_step_rate(env, args.seconds, action_range=0.0))
    raw_rate, env_rate = statistics.median(raw), statistics.median(stepped)
    ceiling = raw_rate / PHYSICS_STEPS_PER_POLICY
    return [
        "| measurement | steps/s |",
        "|---|---|",
        f"| raw `mj_step` (physics steps) | {raw_rate:,.0f} |",
        f"| ceiling for one env (raw / {PHYSICS_STEPS_PER_POLICY}) | {ceiling:,.0f} |",
        f"| `SO101PaperSquareEnv.step` | {env_rate:,.0f} |",
        f"| **env / ceiling** | **{env_rate / ceiling:.1%}** (target >= 70 %) |",
    ]


def bench_vector(args: Args) -> list[str]:
    makers = {
        "gymnasium SyncVectorEnv": lambda fns: gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP),
        "gymnasium AsyncVectorEnv": lambda fns: gym.vector.AsyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP),
    }
    lines = ["| envs | " + " | ".join(makers) + " |", "|---|" + "---|" * len(makers)]
    for n in (1, 2, 4, 8):
        rates = []
        for make in makers.values():
            envs = make([SO101PaperSquareEnv for _ in range(n)])
            rates.append(env_step_rate(envs, args.seconds, num_envs=n))
            envs.close()
        lines.append(f"| {n} | " + " | ".join(f"{rate:,.0f}" for rate in rates) + " |")
    return lines


def bench_render(args: Args) -> list[str]:
    env = SO101PaperSquareEnv(render_mode="rgb_array", image_size=224)
    env.reset(seed=0)
    env.render()  # warm up the GL context
    rendering, frames, start = 0.0, 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        env.step(np.zeros(6))
        before = time.perf_counter()
        env.render()
        rendering += time.perf_counter() - before
        frames += 1
    env.close()
    return [
        "| MUJOCO_GL | ms per dual-camera frame (2 x 224 x 224) |",
        "|---|---|",
        f"| {os.environ.get('MUJOCO_GL', 'glfw')} | {rendering / frames * 1e3:.2f} |",
    ]


# ---------------------------------------------------------------------------- train
class ResidualTaskForSB3(gym.Wrapper):
    """The residual task as a plain env for Stable-Baselines3, which has no notion of a base.

    The Jacobian base runs inside each env (one per worker process, as the seed project did);
    the agent sees the state and the base action, exactly like ppo_residual_jacobian.py's actor.
    """

    def __init__(self, alpha: float = 0.5, residual_penalty: float = 0.001, reward_scale: float = 0.1):  # the trainer's REWARD_SCALE
        super().__init__(SO101PaperSquareEnv())
        self.base = make_base_policy("jacobian", num_envs=1)
        self.alpha, self.residual_penalty, self.reward_scale = alpha, residual_penalty, reward_scale
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(so101_env.STATE_DIM + 6,), dtype=np.float32)

    def _observe(self, state):
        self.base_action = self.base.act(state[None])
        return np.concatenate([state, self.base_action[0]]).astype(np.float32)

    def reset(self, **kwargs):
        state, info = self.env.reset(**kwargs)
        self.base.reset()
        return self._observe(state), info

    def step(self, residual):
        action = compose_action(self.base_action, residual[None], self.alpha)[0]
        state, reward, terminated, truncated, info = self.env.step(action)
        penalty = self.residual_penalty * float(np.square(np.clip(residual, -1, 1)).sum())
        return self._observe(state), (reward - penalty) * self.reward_scale, terminated, truncated, info


def our_command(args: Args, total_timesteps: int, *extra: str) -> list[str]:
    """ppo_residual_jacobian.py on the comparison's task: constant alpha, no curriculum, no warm-up, no evaluation."""
    settings = {**PPO_SETTINGS, "total_timesteps": total_timesteps, "num_envs": args.num_envs, "alpha_start": None,
                "curriculum_start_half_size": None, "critic_warmup_iterations": 0, "eval_every": 0}
    flags = [item for name, value in settings.items() for item in ("--" + name.replace("_", "-"), str(value))]
    return [sys.executable, "ppo_residual_jacobian.py", *flags, *extra]


def timed_run(command: list[str], steps: int, run_dir: str, tags: dict[str, str]) -> dict:
    """Run a trainer's command in a fresh directory under run_dir: env steps/s over the whole run (process start
    and set-up included) and the median of each TensorBoard scalar in `tags` (key -> tag) that the run logged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_root = tempfile.mkdtemp(dir=run_dir)
    start = time.perf_counter()
    subprocess.run([*command, "--run-dir", run_root], check=True, capture_output=True, cwd=ROOT)
    result = {"sps": steps / (time.perf_counter() - start)}
    (run,) = pathlib.Path(run_root).iterdir()
    events = EventAccumulator(str(run))
    events.Reload()
    logged = events.Tags()["scalars"]
    result |= {key: statistics.median(e.value for e in events.Scalars(tag)) for key, tag in tags.items() if tag in logged}
    return result


ITERATION_TAGS = {"rollout": "charts/rollout_seconds", "update": "charts/update_seconds"}


def train_ours(args: Args, run_dir: str) -> dict:
    """Env steps/s over the whole run (process start and set-up included) and median rollout / update seconds."""
    return timed_run(our_command(args, args.train_steps), args.train_steps, run_dir, ITERATION_TAGS)


def make_sb3_ppo(args: Args, envs, seed: int):
    """Stable-Baselines3 PPO with PPO_SETTINGS: same rollout, minibatches, epochs, network and std."""
    from stable_baselines3 import PPO

    ours = PPO_SETTINGS
    return PPO(
        "MlpPolicy", envs, n_steps=ours["num_steps"], batch_size=args.num_envs * ours["num_steps"] // ours["num_minibatches"],
        n_epochs=ours["update_epochs"], learning_rate=ours["learning_rate"], gamma=ours["gamma"],
        gae_lambda=ours["gae_lambda"], clip_range=ours["clip_coef"], ent_coef=ours["ent_coef"], vf_coef=ours["vf_coef"],
        max_grad_norm=ours["max_grad_norm"],
        policy_kwargs=dict(net_arch=dict(pi=[ours["hidden_size"]] * 2, vf=[ours["hidden_size"]] * 2),
                           activation_fn=torch.nn.Tanh, log_std_init=ours["residual_log_std"]),
        device="cpu", seed=seed, verbose=0,
    )


def train_sb3(args: Args, vec_env: str) -> dict:
    """The same, for Stable-Baselines3 PPO with its SubprocVecEnv or DummyVecEnv (set-up included)."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    torch.set_num_threads(PPO_SETTINGS["torch_threads"])
    start = time.perf_counter()
    envs = {"SubprocVecEnv": SubprocVecEnv, "DummyVecEnv": DummyVecEnv}[vec_env]([ResidualTaskForSB3] * args.num_envs)
    model = make_sb3_ppo(args, envs, seed=1)
    seconds = {"rollout": [], "update": []}

    def timed(method, key):
        def wrapper(*method_args, **kwargs):
            before = time.perf_counter()
            result = method(*method_args, **kwargs)
            seconds[key].append(time.perf_counter() - before)
            return result

        return wrapper

    model.collect_rollouts = timed(model.collect_rollouts, "rollout")
    model.train = timed(model.train, "update")
    model.learn(total_timesteps=args.train_steps)
    envs.close()
    rate = args.train_steps / (time.perf_counter() - start)
    return {"sps": rate, "rollout": statistics.median(seconds["rollout"]), "update": statistics.median(seconds["update"])}


def record_base_actions(num_envs: int, num_steps: int) -> np.ndarray:
    """The Jacobian base's actions over one rollout of `num_envs` envs (seeds 0, 1, ...)."""
    envs = [SO101PaperSquareEnv() for _ in range(num_envs)]
    base = make_base_policy("jacobian", num_envs=num_envs)
    states = np.stack([env.reset(seed=i)[0] for i, env in enumerate(envs)])
    actions = np.empty((num_steps, num_envs, 6))
    for t in range(num_steps):
        actions[t] = base.act(states)
        ended = np.zeros(num_envs, dtype=bool)
        for i, env in enumerate(envs):
            states[i], _, terminated, truncated, _ = env.step(actions[t, i])
            if terminated or truncated:
                states[i], _ = env.reset()
                ended[i] = True
        base.reset(ended)
    return actions


def _replay_slice(env_ids: np.ndarray, actions: np.ndarray, start, done) -> None:
    envs = {i: SO101PaperSquareEnv() for i in env_ids}
    for i, env in envs.items():
        env.reset(seed=int(i))
    start.wait()
    for step_actions in actions:
        for i, env in envs.items():
            _, _, terminated, truncated, _ = env.step(step_actions[i])
            if terminated or truncated:
                env.reset()
    done.wait()


def physics_floor(actions: np.ndarray, workers: int) -> float:
    """Seconds to replay one rollout's actions with the envs split over `workers` processes that
    never wait for anything: what stepping the envs costs with no inference and no communication."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    start, done = context.Barrier(workers + 1), context.Barrier(workers + 1)
    slices = np.array_split(np.arange(actions.shape[1]), workers)
    processes = [context.Process(target=_replay_slice, args=(ids, actions, start, done)) for ids in slices]
    for process in processes:
        process.start()
    start.wait()  # the envs are built; time only the stepping
    before = time.perf_counter()
    done.wait()
    seconds = time.perf_counter() - before
    for process in processes:
        process.join()
    return seconds


def profile_iteration(args: Args, run_dir: str) -> list[str]:
    """cProfile of one iteration of ppo_residual_jacobian.py collecting in one process (--num-workers 0),
    so that the profile sees the rollout's work, not a wait for the workers."""
    run_root, stats = tempfile.mkdtemp(dir=run_dir), os.path.join(run_dir, "iteration.prof")
    command = our_command(args, args.num_envs * PPO_SETTINGS["num_steps"], "--num-workers", "0", "--run-dir", run_root)
    # runpy, not `python -m cProfile script.py`: tyro reads the annotations of Args from sys.modules["__main__"],
    # which runpy points at the script and cProfile's own command line leaves at cProfile.
    profiled = ("import cProfile, runpy, sys; stats = sys.argv.pop(1); sys.argv.pop(0); "
                "cProfile.run('runpy.run_path(sys.argv[0], run_name=\"__main__\")', stats)")
    subprocess.run([command[0], "-c", profiled, stats, *command[1:]], check=True, capture_output=True, cwd=ROOT)
    stream = io.StringIO()
    pstats.Stats(stats, stream=stream).sort_stats("tottime").print_stats(12)
    table = [line for line in stream.getvalue().splitlines() if line.strip()][-13:]
    return ["```", *table, "```"]


def bench_train(args: Args) -> list[str]:
    trainers = {
        "ppo_residual_jacobian.py": lambda run_dir: train_ours(args, run_dir),
        "SB3 PPO, SubprocVecEnv": lambda run_dir: train_sb3(args, "SubprocVecEnv"),
        "SB3 PPO, DummyVecEnv": lambda run_dir: train_sb3(args, "DummyVecEnv"),
    }
    runs = {name: [] for name in trainers}
    with tempfile.TemporaryDirectory() as run_dir:
        # Interleaved rounds, so a slow spell of a shared machine hits every trainer alike.
        for round_ in range(args.train_rounds):
            for name, train in trainers.items():
                runs[name].append(train(run_dir))
                print(f"  round {round_ + 1}: {name}: {runs[name][-1]['sps']:,.0f} env steps/s", flush=True)
        actions = record_base_actions(args.num_envs, 256)
        workers = min(os.cpu_count() or 1, args.num_envs)  # as ppo_residual_jacobian.py's default --num-workers
        floor = statistics.median(physics_floor(actions, workers) for _ in range(3))
        profile = profile_iteration(args, run_dir)

    def median(name, key):
        return statistics.median(run[key] for run in runs[name])

    ours = "ppo_residual_jacobian.py"
    iteration = {name: median(name, "rollout") + median(name, "update") for name in trainers}
    best_sb3 = min((name for name in trainers if name != ours), key=iteration.get)
    lines = [
        f"{args.num_envs} envs, 256 steps per env per rollout (2,048 per iteration), 32 minibatches, 10 epochs, 256-256 "
        f"tanh actor and critic, 1 torch thread; {args.train_steps:,} env steps per run, {args.train_rounds} interleaved "
        "rounds; medians over rounds and iterations.",
        "",
        "| trainer | env steps/s, whole run | rollout s / iteration | PPO update s / iteration | s / iteration |",
        "|---|---|---|---|---|",
    ]
    for name in trainers:
        sps = ", ".join(f"{run['sps']:,.0f}" for run in runs[name])
        lines.append(f"| {name} | {sps} | {median(name, 'rollout'):.2f} | {median(name, 'update'):.2f} | "
                     f"{iteration[name]:.2f} |")
    ratio = iteration[best_sb3] / iteration[ours]
    needed = iteration[best_sb3] / 2 - median(ours, "update")
    lines += [
        "",
        f"**Ratio against the faster SB3 setup ({best_sb3}): {ratio:.2f}x per iteration** (target >= 2x); "
        f"against the other: {max(iteration[n] for n in trainers if n != ours) / iteration[ours]:.2f}x.",
        "",
        "Where a rollout's time goes (seconds per iteration, same machine, same run):",
        "",
        "| part | s |",
        "|---|---|",
        f"| physics floor: the rollout's 2,048 env steps replayed on {workers} processes that never wait "
        f"(no inference, no communication) | {floor:.2f} |",
        f"| ppo_residual_jacobian.py rollout | {median(ours, 'rollout'):.2f} |",
        f"| rollout that 2x needs, given our update ({best_sb3} iteration / 2 - our update) | {needed:.2f} |",
        "",
        f"Best ratio this update allows with a rollout at the physics floor: {iteration[best_sb3] / (floor + median(ours, 'update')):.2f}x; "
        f"with a free rollout: {iteration[best_sb3] / median(ours, 'update'):.2f}x.",
        "",
        "Profile of one iteration of ppo_residual_jacobian.py collecting in one process (`--num-workers 0`; "
        "cProfile, sorted by own time):",
        "",
        *profile,
    ]
    return lines


# ---------------------------------------------------------------------------- groot
def train_default(script: str, args: Args, run_dir: str) -> dict:
    """One trainer with its defaults for --train-steps steps, no evaluation (the GR00T scalars are absent for the
    Jacobian trainer)."""
    command = [sys.executable, script, "--total-timesteps", str(args.train_steps), "--num-envs", str(args.num_envs),
               "--eval-every", "0"]
    tags = ITERATION_TAGS | {"calls": "groot/calls", "batch": "groot/batch_size", "call_seconds": "groot/inference_time"}
    return timed_run(command, args.train_steps, run_dir, tags)


def bench_groot(args: Args) -> list[str]:
    scripts = ("ppo_residual_jacobian.py", "ppo_residual_groot.py")
    runs = {script: [] for script in scripts}
    with tempfile.TemporaryDirectory() as run_dir:
        for round_ in range(args.train_rounds):  # interleaved, so a slow spell of a shared machine hits both alike
            for script in scripts:
                runs[script].append(train_default(script, args, run_dir))
                print(f"  round {round_ + 1}: {script}: {runs[script][-1]['sps']:,.0f} env steps/s", flush=True)

    def median(script, key):
        values = [run[key] for run in runs[script] if key in run]
        return f"{statistics.median(values):.2f}" if values else "-"

    lines = [
        f"Each trainer with its default settings and {args.num_envs} envs, evaluation off, {args.train_steps:,} env "
        f"steps per run, {args.train_rounds} interleaved rounds; medians over rounds and iterations.",
        "",
        "| trainer | env steps/s, whole run | rollout s / iteration | PPO update s / iteration | GR00T calls / iteration "
        "| envs per call | s per call |",
        "|---|---|---|---|---|---|---|",
    ]
    for script in scripts:
        sps = ", ".join(f"{run['sps']:,.0f}" for run in runs[script])
        lines.append(f"| {script} | {sps} | " + " | ".join(median(script, key) for key in
                                                               ("rollout", "update", "calls", "batch", "call_seconds")) + " |")
    ratio = statistics.median(run["sps"] for run in runs[scripts[0]]) / statistics.median(run["sps"] for run in runs[scripts[1]])
    lines += ["", f"**The Jacobian trainer collects {ratio:.1f}x the env steps per second of the GR00T trainer.**"]
    return lines


# ---------------------------------------------------------------------------- time95
TIME95_EPISODE_SEEDS = range(10_000, 10_100)
"""ppo_residual_jacobian.py's in-training evaluation episodes (reset seeds 10000 + i)"""


def reaches(success: float, target: float) -> bool:
    """TensorBoard stores float32, where 95/100 reads 0.94999999: the tolerance counts it as 0.95."""
    return success >= target - 1e-6


def first_success(points: list[tuple[int, float, float]], target: float) -> tuple[int, float] | None:
    """(env steps, minutes) of the first (steps, minutes, success) evaluation at or above target."""
    return next(((steps, minutes) for steps, minutes, success in points if reaches(success, target)), None)


def settled_success(points: list[tuple[int, float, float]], target: float) -> tuple[int, float] | None:
    """(env steps, minutes) of the evaluation from which every later one is at or above target too."""
    settled = None
    for steps, minutes, success in points:
        settled = (settled or (steps, minutes)) if reaches(success, target) else None
    return settled


def run_evaluations(run: str) -> list[tuple[int, float, float]]:
    """(env steps, training minutes, success) of each in-training evaluation in a run's TensorBoard log."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(run)
    events.Reload()
    if "eval/training_minutes" not in events.Tags()["scalars"]:
        raise SystemExit(f"{run}: no eval/training_minutes in its log; train it with --eval-every > 0 on the current script")
    minutes = {e.step: e.value for e in events.Scalars("eval/training_minutes")}
    return [(e.step, minutes[e.step], e.value) for e in events.Scalars("eval/success_rate") if e.step in minutes]


def our_time_to_success(run: str, target: float) -> tuple[tuple[int, float] | None, int]:
    """From a run's TensorBoard log: the first evaluation at the target, and how many evaluations it made."""
    points = run_evaluations(run)
    return first_success(points, target), len(points)


def sb3_time_to_success(args: Args, seed: int) -> tuple[tuple[int, float] | None, int]:
    """Stable-Baselines3 PPO on the residual task, evaluated on TIME95_EPISODE_SEEDS every 10 iterations
    (deterministic residual, the evaluation's time left out) until it reaches the target."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import SubprocVecEnv

    from episodes import run_episode

    torch.set_num_threads(PPO_SETTINGS["torch_threads"])
    start, points = time.perf_counter(), []
    envs = SubprocVecEnv([ResidualTaskForSB3] * args.num_envs)
    model = make_sb3_ppo(args, envs, seed)
    eval_env, eval_base = SO101PaperSquareEnv(), make_base_policy("jacobian", num_envs=1)

    def residual_mean(states: np.ndarray, base_actions: np.ndarray) -> np.ndarray:
        return model.predict(np.concatenate([states, base_actions], axis=1).astype(np.float32), deterministic=True)[0]

    class Evaluate(BaseCallback):
        def __init__(self):
            super().__init__()
            self.iterations, self.eval_seconds, self.rollout_start = 0, 0.0, start

        def _on_rollout_start(self) -> None:
            self.rollout_start = time.perf_counter()

        def _on_step(self) -> bool:
            return not (points and points[-1][2] >= args.target_success)  # False ends learn()

        def _on_rollout_end(self) -> None:
            # SB3 updates after this call: the policy evaluated here is the one that collected this rollout,
            # so its steps and minutes are those before the rollout (ours evaluates right after an update).
            self.iterations += 1
            if self.iterations % 10 == 1 and self.iterations > 1:
                minutes = (self.rollout_start - start - self.eval_seconds) / 60
                steps = self.num_timesteps - args.num_envs * PPO_SETTINGS["num_steps"]
                eval_start = time.perf_counter()
                policy = ResidualPolicy(eval_base, residual_mean, PPO_SETTINGS["alpha"])
                success = float(np.mean([run_episode(eval_env, policy, s).success for s in TIME95_EPISODE_SEEDS]))
                self.eval_seconds += time.perf_counter() - eval_start
                points.append((steps, minutes, success))
                print(f"  SB3 seed {seed}: step {steps}: success {success:.2f} after {minutes:.1f} min of training", flush=True)

    model.learn(total_timesteps=args.sb3_max_steps, callback=Evaluate())
    envs.close()
    eval_env.close()
    return first_success(points, args.target_success), len(points)


def bench_time_to_success(args: Args) -> list[str]:
    ours = []  # (name, first crossing, the 'from then on' cell, evaluations): each log read once
    for run in args.our_runs:
        points = run_evaluations(run)
        settled = settled_success(points, args.target_success)
        ours.append((f"ppo_residual_jacobian.py ({pathlib.Path(run).name})", first_success(points, args.target_success),
                     f"{settled[0]:,} steps, {settled[1]:.1f} min" if settled else "never", len(points)))
    sb3 = []  # SB3 stops at its first crossing, so "from then on" does not apply
    for seed in args.sb3_seeds:
        reached, evaluations = sb3_time_to_success(args, seed)
        sb3.append((f"SB3 PPO, SubprocVecEnv (seed {seed})", reached, "SB3 stops at the first", evaluations))
    target = f"{100 * args.target_success:.0f} %"
    lines = [f"First 100-episode evaluation (reset seeds {TIME95_EPISODE_SEEDS.start}-{TIME95_EPISODE_SEEDS.stop - 1}) at or "
             f"above {target}; minutes of training wall-clock with the evaluations left out.", "",
             f"| trainer | env steps to {target} | minutes to {target} | at or above it from then on | evaluations |",
             "|---|---|---|---|---|"]
    for name, reached, stays, evaluations in ours + sb3:
        cells = (f"{reached[0]:,}", f"{reached[1]:.1f}") if reached else ("not reached", "not reached")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {stays} | {evaluations} |")
    for label, rows in (("ppo_residual_jacobian.py", ours), ("SB3 PPO", sb3)):
        reached = [r for _, r, _, _ in rows if r]
        if reached:
            lines.append(f"\n{label}: median over the {len(reached)} run(s) that reached it: "
                         f"{statistics.median(r[0] for r in reached):,.0f} env steps, {statistics.median(r[1] for r in reached):.1f} min.")
    return lines


SECTIONS = {"env": bench_env, "vector": bench_vector, "render": bench_render, "train": bench_train, "groot": bench_groot,
            "time95": bench_time_to_success}
TITLES = {
    "env": "One environment against the raw MuJoCo limit",
    "vector": "Vector environments (env steps per second, all envs together)",
    "render": "Rendering",
    "train": "End-to-end training against Stable-Baselines3",
    "groot": "What the GR00T base costs a training run",
    "time95": "Time to a working policy (95 % success)",
}


def check_args(args: Args) -> None:
    """Every option checked before anything is measured: one line per problem, exit status 2."""
    problems = option_problems(args, within=dict(rounds=(1, 1000), train_steps=(1, 10**8), train_rounds=(1, 100),
                                                 num_envs=(1, 256), sb3_seeds=(0, MAX_SEED), sb3_max_steps=(1, 10**9)),
                               above=dict(seconds=0.0, target_success=0.0), at_most=dict(seconds=3600.0, target_success=1.0))
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        problems.append(f"unknown --only section(s) {sorted(unknown)}; choose from {list(SECTIONS)}")
    if "time95" in args.only and not args.our_runs and not args.sb3_seeds:
        problems.append("time95 needs --our-runs and/or --sb3-seeds")
    refuse(problems + output_problems([("--output", args.output)] if args.output else [], args.overwrite))


def main(args: Args) -> dict[str, list[str]]:
    check_args(args)
    results = {}
    for name in args.only:
        print(f"## {TITLES[name]}", flush=True)
        results[name] = SECTIONS[name](args)
        print("\n".join(results[name]) + "\n", flush=True)
    if args.output:
        header = [
            "# Benchmarks",
            "",
            f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU in use, "
            f"Python {platform.python_version()}, mujoco {mujoco.__version__}, gymnasium {gym.__version__}, "
            f"torch {torch.__version__}.",
            "",
            f"Command: `python benchmark.py --output {args.output}`",
            "",
        ]
        body = [line for name in args.only for line in (f"## {TITLES[name]}", "", *results[name], "")]
        try:
            write_atomically(args.output, lambda temporary: temporary.write_text("\n".join(header + body)), args.overwrite)
        except OSError as error:  # a full disk, a file that appeared meanwhile: the results printed above remain
            raise SystemExit(f"error: cannot write {args.output}: {error}") from None
        print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main(tyro.cli(Args))

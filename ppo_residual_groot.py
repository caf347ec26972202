"""Residual PPO on the GR00T N1.5 base policy for SO-101 paper-in-square (CleanRL style).

    python ppo_residual_groot.py                                   # the small sim GR00T in checkpoints/, CPU, offline
    python ppo_residual_groot.py --groot.model phospho-app/gr00t-paper_return-7w9itxzsox   # the real-robot 3B (GPU)
    python ppo_residual_groot.py --groot.backend server --groot.host gpu-box --groot.port 5555
    python ppo_residual_groot.py --resume runs/<run>/checkpoints/latest.pt

ppo_residual_jacobian.py given a vision base: `diff` the two files to see the GR00T change. GR00T
reads both camera images and the joint positions and returns 16-step chunks of joint targets;
each env executes `--groot.chunk-steps` of them open-loop (converted to normalized deltas) while the
residual corrects every step. The cameras are rendered only on the steps where some env needs a
new chunk (every `--groot.chunk-steps` steps and after a reset), and all envs that need one are queried
in ONE batched call to the single GR00T instance, so the collector runs in this process and the
envs step in worker processes (`--async-envs`). `groot/inference_time` (seconds per call) and
`groot/batch_size` (envs per call) are logged with the rest.

Read it top to bottom: `Args`, the `Agent`, the `RolloutCollector` that steps the envs
(`envs.step`) with the base and the residual, then `prepare_run` (options, resume, run directory)
and `train`: rollout, GAE and the clipped PPO update of CleanRL's ppo_continuous_action.py.

The executed action is `base_action + alpha * residual`, clipped to [-1, 1]. The residual
actor sees the normalized state and the base action; its last layer starts at zero, so before
any update its mean is exactly zero and the agent behaves exactly like the base. The critic
sees the normalized state. Critic-only warm-up iterations run the base alone (residual mean)
so the value function is sensible before the actor starts moving. The base is deterministic
(`--groot.noise zero`), so the residual corrects a base it can predict.

Everything algorithmic lives in this file on purpose: copy it to try an idea.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import pathlib
import random
import time
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro
from torch.utils.tensorboard import SummaryWriter

import so101_env
from base_policies import ResidualPolicy, camera_images, compose_action, make_base_policy
from episodes import run_episode
from groot_base import GrootOptions
from actor_program import export_actor
from checkpoint_io import CHECKPOINT_FORMAT, check_agent_state, load_checkpoint, load_resume, save_checkpoint
from command_line import (MAX_SEED, MAX_TORCH_THREADS, BadInput, device_problems, name_problems, option_problems,
                          refuse, resume_options)
from run_dirs import create_run_dir, hold_run_dir
from stop_signals import StopSignals, close_writer
from videos import write_video

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
MAX_ENVS = 256  # each env holds its own MuJoCo model and data; beyond this a CPU machine only swaps
MAX_BATCH_SIZE = 2**20  # env steps per rollout (num_envs * num_steps): the rollout's storage, ~300 MB
ALPHA_RAMP_FRACTION = 0.5  # alpha ramps from --alpha-start to --alpha over this fraction of the iterations
CURRICULUM_STEP, CURRICULUM_THRESHOLD, CURRICULUM_WINDOW = 0.01, 0.8, 64  # shrink 1 cm when 80 % of 64 episodes succeed
REWARD_SCALE = 0.1  # rewards are scaled before learning: returns of a few units suit the critic
IMAGE_SIZE = 224  # pixels of the rendered camera images (resized to the checkpoint's training resolution) and videos


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """name of this experiment (part of the run directory name)"""
    seed: int = 1
    """seed of the experiment (envs get seed, seed + 1, ...)"""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    """torch device of the GR00T model (local backend) and of the agent"""
    torch_threads: int = 1
    """torch intra-op threads; keep the cores for the env workers"""
    track: bool = False
    """log to Weights & Biases as well (needs `pip install wandb`)"""
    wandb_project_name: str = "so101-residual-rl"
    """the wandb project name"""
    wandb_entity: str | None = None
    """the wandb entity (team)"""
    run_dir: str = "runs"
    """directory that holds one sub-directory per run"""

    groot: GrootOptions = field(default_factory=lambda: GrootOptions(noise="zero"))
    """the GR00T base; deterministic by default (noise zero), so the residual corrects a base it can predict"""

    # Residual RL
    alpha: float = 0.3
    """residual scale: action = base + alpha * residual (final value when a schedule is used)"""
    alpha_start: float | None = 0.2
    """if set, alpha ramps linearly from alpha_start to alpha over the first half of training"""
    residual_penalty: float = 0.001
    """reward penalty per step: residual_penalty * ||residual||^2"""
    residual_log_std: float = -1.0
    """initial log standard deviation of the residual's exploration noise"""
    critic_warmup_iterations: int = 2
    """first iterations train only the critic, on rollouts of the base alone"""
    tape_half_size: float = 0.08
    """inner half-size of the tape square at the end of the curriculum (and at evaluation)"""
    curriculum_start_half_size: float | None = None
    """if set, training starts with this larger square and shrinks it 1 cm at a time, each time 80 % of the last 64 training episodes succeeded (off: a base that already succeeds most of the time gives enough successes on the final square, and its failures only show there)"""

    # PPO
    total_timesteps: int = 500_000
    """total environment steps"""
    learning_rate: float = 3e-4
    """learning rate of the optimizer"""
    num_envs: int = 8
    """number of parallel environments (worker processes); one GR00T instance serves them all. With 4,
    a 1,024-step rollout held ~4 episodes and PPO's updates overshot (approx_kl 0.1-0.2, clipfrac 0.5)"""
    async_envs: bool = True
    """run envs in worker processes (False: in this process, easier to debug)"""
    num_steps: int = 256
    """steps per env per rollout"""
    anneal_lr: bool = True
    """linearly anneal the learning rate to zero"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """lambda of generalized advantage estimation"""
    num_minibatches: int = 32
    """number of minibatches per epoch"""
    update_epochs: int = 10
    """epochs per PPO update"""
    norm_adv: bool = True
    """normalize advantages per minibatch"""
    clip_coef: float = 0.2
    """surrogate clipping coefficient"""
    clip_vloss: bool = True
    """clip the value loss as in PPO2"""
    ent_coef: float = 0.0
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """gradient clipping norm"""
    target_kl: float | None = None
    """stop the epoch loop early when the approximate KL exceeds this"""
    hidden_size: int = 256
    """width of the two hidden layers of actor and critic"""

    # Evaluation, video, checkpoints
    eval_every: int = 25
    """evaluate (and maybe save `best`) every this many iterations (~25k steps: an evaluation env runs GR00T one env at a time); 0 disables"""
    eval_episodes: int = 10
    """deterministic evaluation episodes per evaluation (fixed seeds, final square size)"""
    capture_video: bool = True
    """render the first evaluation episode as a dual-camera MP4 and show it in TensorBoard"""
    resume: str | None = None
    """checkpoint to continue from, RUN/checkpoints/NAME.pt: the run goes on in RUN, whatever the file says (to branch
    a run, copy it, `cp -a RUN COPY`, and resume the copy); refused while another trainer still writes RUN"""

    # filled in at runtime
    batch_size: int = 0
    minibatch_size: int = 0
    num_iterations: int = 0


def validate_args(args: Args) -> None:
    """Every option checked before anything is built: one line per problem, exit status 2."""
    problems = option_problems(
        args,
        within=dict(seed=(0, MAX_SEED), torch_threads=(1, MAX_TORCH_THREADS), alpha=(0.0, 1.0), alpha_start=(0.0, 1.0),
                    residual_penalty=(0.0, 100.0), residual_log_std=(-10.0, 2.0), critic_warmup_iterations=(0, 10**6),
                    tape_half_size=(0.02, 0.3), curriculum_start_half_size=(0.02, 0.3), total_timesteps=(1, 10**10),
                    num_envs=(1, MAX_ENVS), num_steps=(1, MAX_BATCH_SIZE), gamma=(0.0, 1.0),
                    gae_lambda=(0.0, 1.0), num_minibatches=(1, MAX_BATCH_SIZE), update_epochs=(1, 1000),
                    clip_coef=(0.0, 1.0), ent_coef=(0.0, 1.0), vf_coef=(0.0, 10.0), hidden_size=(1, 4096),
                    eval_every=(0, 10**6), eval_episodes=(1, 10_000)),
        above=dict(learning_rate=0.0, max_grad_norm=0.0, target_kl=0.0),
        at_most=dict(learning_rate=1.0, max_grad_norm=100.0, target_kl=10.0),
    ) + name_problems(args, "exp_name") + device_problems(args.device) + args.groot.problems()
    batch = args.num_envs * args.num_steps  # env steps per rollout
    if not problems and not args.num_minibatches <= batch <= MAX_BATCH_SIZE:  # options out of range are named already
        problems.append(f"--num-envs * --num-steps must be within [--num-minibatches, {MAX_BATCH_SIZE}], got {batch}")
    refuse(problems)


def make_env(args: Args, tape_half_size: float):
    def thunk():
        env = so101_env.SO101PaperSquareEnv(tape_half_size=tape_half_size, image_size=IMAGE_SIZE)
        return gym.wrappers.RecordEpisodeStatistics(env)

    return thunk


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class RunningNorm(nn.Module):
    """Running mean/variance normalizer; its statistics are buffers, so they live in checkpoints."""

    def __init__(self, size: int, clip: float = 10.0):
        super().__init__()
        self.register_buffer("mean", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("var", torch.ones(size, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))
        self.clip = clip

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.to(torch.float64)
        if not torch.isfinite(x).all():  # a single bad sample would poison the statistics forever
            return
        batch_mean, batch_var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + n
        # In place: rollout worker processes read these tensors through shared memory.
        self.var.copy_((self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total)
        self.mean += delta * n / total
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normalized = (x - self.mean.to(x.dtype)) / torch.sqrt(self.var.to(x.dtype) + 1e-8)
        return normalized.clamp(-self.clip, self.clip)


class Agent(nn.Module):
    """Residual actor (state + base action -> residual) and critic (state -> value)."""

    def __init__(self, state_dim: int, action_dim: int, hidden_size: int = 256, log_std: float = -1.0):
        super().__init__()
        self.state_norm = RunningNorm(state_dim)
        self.critic = nn.Sequential(
            layer_init(nn.Linear(state_dim, hidden_size)),
            nn.Tanh(),
            layer_init(nn.Linear(hidden_size, hidden_size)),
            nn.Tanh(),
            layer_init(nn.Linear(hidden_size, 1), std=1.0),
        )
        self.actor_mean = nn.Sequential(
            layer_init(nn.Linear(state_dim + action_dim, hidden_size)),
            nn.Tanh(),
            layer_init(nn.Linear(hidden_size, hidden_size)),
            nn.Tanh(),
            layer_init(nn.Linear(hidden_size, action_dim), std=0.0),  # residual starts at exactly zero
        )
        self.actor_logstd = nn.Parameter(torch.full((1, action_dim), log_std))

    def get_value(self, state: torch.Tensor) -> torch.Tensor:
        return self.critic(self.state_norm(state))

    def actor_input(self, state: torch.Tensor, base_action: torch.Tensor) -> torch.Tensor:
        """[normalized state, base action]: what the actor sees; the critic sees its first part."""
        return torch.cat([self.state_norm(state), base_action], dim=-1)

    def residual_mean(self, state: torch.Tensor, base_action: torch.Tensor) -> torch.Tensor:
        """The deterministic residual, the mean the rollouts sample around. Every checkpoint holds it as an exported
        program that eval_policy.py runs instead of this file: a copy with another actor is evaluated as it trained."""
        return self.actor_mean(self.actor_input(state, base_action))

    def get_action_and_value(self, actor_input: torch.Tensor, residual: torch.Tensor | None = None):
        """From precomputed actor inputs, so a PPO update normalizes each state once, not per epoch."""
        mean = self.actor_mean(actor_input)
        log_std = self.actor_logstd.expand_as(mean)
        std = log_std.exp()
        if residual is None:
            residual = mean + std * torch.randn_like(mean)
        # The diagonal Gaussian written out: torch.distributions.Normal does the same maths with
        # about twice the tensor operations, a third of the cost of inference during a rollout.
        log_prob = (-0.5 * ((residual - mean) / std).square() - log_std - LOG_SQRT_2PI).sum(1)
        entropy = (0.5 + LOG_SQRT_2PI + log_std).sum(1)
        value = self.critic(actor_input[:, : self.state_norm.mean.shape[0]])
        return residual, log_prob, entropy, value


def alpha_at(args: Args, iteration: int) -> float:
    """Residual scale for a (1-based) iteration under the linear schedule."""
    if args.alpha_start is None:
        return args.alpha
    ramp = max(1, int(ALPHA_RAMP_FRACTION * args.num_iterations))
    progress = min(1.0, (iteration - 1) / ramp)
    return args.alpha_start + (args.alpha - args.alpha_start) * progress


@dataclass
class RolloutStorage:
    """One rollout, indexed [step, env]; in shared memory when worker processes fill it."""

    states: torch.Tensor
    actor_inputs: torch.Tensor
    residuals: torch.Tensor
    logprobs: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    values: torch.Tensor
    next_states: torch.Tensor  # [env]: the states after the last step, to bootstrap from
    next_dones: torch.Tensor

    @classmethod
    def zeros(cls, num_steps: int, num_envs: int, state_dim: int, action_dim: int, device) -> RolloutStorage:
        shapes = dict(states=(num_steps, num_envs, state_dim), actor_inputs=(num_steps, num_envs, state_dim + action_dim),
                      residuals=(num_steps, num_envs, action_dim), logprobs=(num_steps, num_envs),
                      rewards=(num_steps, num_envs), dones=(num_steps, num_envs), values=(num_steps, num_envs),
                      next_states=(num_envs, state_dim), next_dones=(num_envs,))
        return cls(**{name: torch.zeros(shape, device=device) for name, shape in shapes.items()})


class RolloutCollector:
    """Steps the envs `columns` of the batch with the base and the agent's residual, and writes each
    rollout into those columns of the storage: all envs here, or a slice in a worker process."""

    def __init__(self, args: Args, envs: gym.vector.VectorEnv, base, agent: Agent, storage: RolloutStorage,
                 columns: slice, seed: int):
        self.args, self.envs, self.base, self.agent, self.storage, self.columns = args, envs, base, agent, storage, columns
        self.next_obs, _ = envs.reset(seed=seed + columns.start)  # env i gets seed + i
        self.next_done = np.zeros(envs.num_envs, dtype=bool)

    def collect(self, alpha: float, warmup: bool) -> dict:
        """One rollout of `num_steps` steps per env; returns the statistics of the episodes that ended."""
        args, agent, storage, columns = self.args, self.agent, self.storage, self.columns
        device = storage.states.device
        stats = {"returns": [], "lengths": [], "successes": [], "final_distances": [], "penalties": [], "unstable": 0}
        for step in range(args.num_steps):
            base_action = self.base.act(self.next_obs, camera_images(self.base, lambda: self.envs.call("render_cameras")))
            state = torch.as_tensor(self.next_obs, dtype=torch.float32, device=device)
            with torch.no_grad():
                actor_input = agent.actor_input(state, torch.as_tensor(base_action, device=device))
                residual, logprob, _, value = agent.get_action_and_value(actor_input)
                if warmup:  # the base alone; the residual's log-probs are unused then
                    residual = agent.actor_mean(actor_input)
            storage.states[step, columns], storage.actor_inputs[step, columns] = state, actor_input
            storage.residuals[step, columns], storage.logprobs[step, columns] = residual, logprob
            storage.values[step, columns] = value.flatten()
            storage.dones[step, columns] = torch.as_tensor(self.next_done, dtype=torch.float32, device=device)

            residual_np = residual.cpu().numpy()
            action = compose_action(base_action, residual_np, alpha)
            self.base.executed(action)
            self.next_obs, reward, terminations, truncations, infos = self.envs.step(action)
            penalty = args.residual_penalty * np.square(np.clip(residual_np, -1, 1)).sum(1)
            stats["penalties"].append(penalty.mean())
            reward = (reward - penalty) * REWARD_SCALE
            self.next_done = np.logical_or(terminations, truncations)
            self.base.reset(self.next_done)

            if "final_info" in infos:
                final, ended = infos["final_info"], infos["_final_info"]
                # Time-limit truncation is not failure: bootstrap from the last state's value.
                cut = np.flatnonzero(ended & truncations & ~terminations)
                if len(cut):
                    final_states = torch.as_tensor(np.stack(infos["final_obs"][cut]), dtype=torch.float32, device=device)
                    with torch.no_grad():
                        reward[cut] += args.gamma * agent.get_value(final_states).flatten().cpu().numpy()
                stats["returns"] += final["episode"]["r"][ended].tolist()
                stats["lengths"] += final["episode"]["l"][ended].tolist()
                stats["successes"] += final["success"][ended].astype(bool).tolist()
                stats["final_distances"] += final["dist_to_goal"][ended].tolist()
                if "sim_unstable" in final:  # gymnasium fills False for the envs whose info lacks it
                    stats["unstable"] += int(final["sim_unstable"][ended].sum())
            storage.rewards[step, columns] = torch.as_tensor(reward, dtype=torch.float32, device=device)
        storage.next_states[columns] = torch.as_tensor(self.next_obs, dtype=torch.float32, device=device)
        storage.next_dones[columns] = torch.as_tensor(self.next_done, dtype=torch.float32, device=device)
        return stats

    def set_tape_half_size(self, half_size: float) -> None:
        self.envs.call("set_tape_half_size", half_size)

    def close(self, interrupted: bool = False) -> None:
        if not interrupted:
            self.envs.close()
            return
        # After Ctrl-C, or a SIGTERM sent to the whole process group, the workers may be mid-step or
        # gone: end them instead of waiting for replies that will not come.
        with contextlib.suppress(OSError, EOFError):
            self.envs.close(terminate=True)
        # A close that stopped at a dead worker's pipe leaves gymnasium's `closed` unset, and its __del__
        # would fail the same way at exit, printing a traceback: end the workers and mark it closed here.
        for process in getattr(self.envs, "processes", ()):  # SyncVectorEnv has none
            process.terminate()
        self.envs.closed = True


def evaluate(agent: Agent, base, args: Args, alpha: float, record_video: bool):
    """Deterministic episodes (residual mean) on fixed seeds; optionally the first as dual-camera frames."""
    env = so101_env.SO101PaperSquareEnv(tape_half_size=args.tape_half_size, render_mode="rgb_array" if record_video else None,
                                        image_size=IMAGE_SIZE)
    device = next(agent.parameters()).device

    def residual_mean(states: np.ndarray, base_action: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            state = torch.as_tensor(states, dtype=torch.float32, device=device)
            return agent.residual_mean(state, torch.as_tensor(base_action, device=device)).cpu().numpy()

    policy, frames = ResidualPolicy(base, residual_mean, alpha), []
    records = [run_episode(env, policy, 10_000 + i, frames if record_video and i == 0 else None)
               for i in range(args.eval_episodes)]
    env.close()
    return float(np.mean([r.success for r in records])), float(np.mean([r.reward for r in records])), frames


def prepare_run(args: Args) -> tuple[Args, dict | None, pathlib.Path]:
    """Checked options, the checkpoint to resume (or None) and the run directory: a new one, created
    for this run alone, or the one that holds the resumed checkpoint (never one named in the file)."""
    resume, named = None, args.groot
    if args.resume:
        try:
            resume, run_dir = load_resume(args.resume, Args(), base_policy="groot")
        except (FileNotFoundError, ValueError) as error:
            raise BadInput(f"cannot resume: {error}") from None
        args, ignored = resume_options(args, resume["args"], Args())
        if ignored:
            print(f"resuming: the saved run's options are kept; ignored {', '.join(ignored)} "
                  "(only a larger --total-timesteps extends a run)")
    validate_args(args)
    if resume is not None:
        try:  # a saved GR00T server or hub checkpoint is used only when this command line names it too
            args.groot = args.groot.confirmed_by(named, "resume it")
            check_agent_state(resume, args.resume, Agent(so101_env.STATE_DIM, so101_env.ACTION_DIM, args.hidden_size))
        except ValueError as error:
            raise BadInput(f"cannot resume: {error}") from None
    args.groot.check_checkpoint()  # before the run directory: a wrong --groot.model leaves nothing behind
    args.batch_size = args.num_envs * args.num_steps
    args.minibatch_size = args.batch_size // args.num_minibatches
    args.num_iterations = max(1, args.total_timesteps // args.batch_size)
    if resume is not None and resume["iteration"] >= args.num_iterations:
        raise BadInput(f"{args.resume} is a finished run ({resume['global_step']} steps); to train on, "
                       f"give a larger --total-timesteps than {args.total_timesteps}")

    if resume is None:
        run_name = f"{so101_env.ENV_ID}__{args.exp_name}__groot__{args.seed}__{int(time.time())}"
        run_dir = create_run_dir(args.run_dir, run_name)
    return args, resume, run_dir


def main(args: Args) -> pathlib.Path:
    args, resume, run_dir = prepare_run(args)
    with hold_run_dir(run_dir):  # until this run ends, another trainer resuming it is refused
        return train(args, resume, run_dir)


def train(args: Args, resume: dict | None, run_dir: pathlib.Path) -> pathlib.Path:
    if args.track:
        import wandb

        wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, sync_tensorboard=True,
                   config=dataclasses.asdict(args), name=run_dir.name, save_code=True)
    # On resume, drop what an interrupted run logged after its checkpoint, so no step is logged twice.
    writer = SummaryWriter(str(run_dir), purge_step=resume["global_step"] + 1 if resume else None)
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in dataclasses.asdict(args).items()))

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = True
    # One thread until the rollout workers are forked: a child forked after OpenMP started its
    # thread pool can deadlock in its first parallel torch operation.
    torch.set_num_threads(1)
    device = torch.device(args.device)

    tape_half_size = args.tape_half_size
    if args.curriculum_start_half_size is not None:
        tape_half_size = max(args.curriculum_start_half_size, args.tape_half_size)
    if resume is not None:
        tape_half_size = resume["tape_half_size"]
    vector_env = gym.vector.AsyncVectorEnv if args.async_envs else gym.vector.SyncVectorEnv
    envs = vector_env([make_env(args, tape_half_size) for _ in range(args.num_envs)],
                      autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    # The env workers are forked above, before the model touches CUDA. The evaluation base shares
    # the training base's model: one GR00T instance in memory.
    base_kwargs = dict(device=args.device, seed=args.seed, **args.groot.base_kwargs())
    try:
        base = make_base_policy("groot", num_envs=args.num_envs, **base_kwargs)
    except (FileNotFoundError, ValueError) as error:
        raise BadInput(f"cannot load the GR00T base: {error}") from None
    except (ConnectionError, TimeoutError) as error:
        raise SystemExit(f"cannot reach the GR00T server: {error}") from None
    eval_base = make_base_policy("groot", num_envs=1, model=base.model, **base_kwargs)
    print(f"GR00T base ({args.groot.backend}): cameras {base.camera_map}, state keys {base.state_keys}, "
          f"action keys {base.action_keys}, units {base.units}")

    state_dim, action_dim = so101_env.STATE_DIM, so101_env.ACTION_DIM
    agent = Agent(state_dim, action_dim, args.hidden_size, args.residual_log_std).to(device)
    # Fused Adam (one kernel per step) where PyTorch has it: the update is a few hundred small
    # minibatch steps, so per-parameter Python work would cost more than the maths.
    fused = device.type in ("cpu", "cuda")
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=fused, foreach=not fused)

    global_step, start_iteration, best_eval = 0, 1, (-1.0, -np.inf)
    recent_successes: list[bool] = []
    if resume is not None:
        agent.load_state_dict(resume["agent"])
        optimizer.load_state_dict(resume["optimizer"])
        global_step, start_iteration = resume["global_step"], resume["iteration"] + 1
        best_eval = tuple(resume["best_eval"])
        recent_successes = list(resume["recent_successes"])
        print(f"resuming {run_dir} at iteration {start_iteration}, global step {global_step}")

    def save(name: str, iteration: int) -> pathlib.Path:
        path = run_dir / "checkpoints" / f"{name}.pt"
        save_checkpoint(path, {
            "format": CHECKPOINT_FORMAT, "trainer": os.path.basename(__file__), "agent": agent.state_dict(),
            "optimizer": optimizer.state_dict(),
            "actor_program": export_actor(agent.residual_mean, state_dim, action_dim),  # what evaluation runs
            "args": {k: v for k, v in dataclasses.asdict(dataclasses.replace(args, groot=args.groot.portable())).items()
                     if k not in ("batch_size", "minibatch_size", "num_iterations")},  # the committed GR00T by its name
            "base_config": eval_base.config(), "state_dim": state_dim, "action_dim": action_dim,
            "global_step": global_step, "iteration": iteration, "alpha": alpha_at(args, iteration),
            "tape_half_size": tape_half_size, "best_eval": best_eval,
            "recent_successes": recent_successes[-CURRICULUM_WINDOW:],
        })
        return path

    # Rollout storage and collection: here, with the one GR00T model; the envs step in their workers.
    storage = RolloutStorage.zeros(args.num_steps, args.num_envs, state_dim, action_dim, device)
    seed = args.seed + 1000 * (start_iteration - 1)  # a resumed run meets new episodes
    collector = RolloutCollector(args, envs, base, agent, storage, slice(0, args.num_envs), seed)
    torch.set_num_threads(args.torch_threads)
    states, actor_inputs, residuals = storage.states, storage.actor_inputs, storage.residuals
    logprobs, rewards, dones, values = storage.logprobs, storage.rewards, storage.dones, storage.values

    start_time, steps_at_start = time.time(), global_step
    eval_seconds = 0.0  # left out of the training time that evaluations report
    completed_iteration, completed_step = start_iteration - 1, global_step
    stop = StopSignals()  # Ctrl-C and SIGTERM both save a checkpoint and exit non-zero
    interrupted = False
    try:
        for iteration in range(start_iteration, args.num_iterations + 1):
            iteration_start = time.perf_counter()
            alpha = alpha_at(args, iteration)
            warmup = iteration <= args.critic_warmup_iterations
            if args.anneal_lr:
                optimizer.param_groups[0]["lr"] = args.learning_rate * (1.0 - (iteration - 1.0) / args.num_iterations)

            stats = collector.collect(alpha, warmup)
            global_step += args.batch_size
            episode_successes = stats["successes"]
            # Generalized advantage estimation
            with torch.no_grad():
                next_value = agent.get_value(storage.next_states).reshape(1, -1)
                next_nonterminal_last = 1.0 - storage.next_dones
                advantages = torch.zeros_like(rewards)
                lastgaelam = 0
                for t in reversed(range(args.num_steps)):
                    if t == args.num_steps - 1:
                        nextnonterminal, nextvalues = next_nonterminal_last, next_value
                    else:
                        nextnonterminal, nextvalues = 1.0 - dones[t + 1], values[t + 1]
                    delta = rewards[t] + args.gamma * nextvalues * nextnonterminal - values[t]
                    advantages[t] = lastgaelam = delta + args.gamma * args.gae_lambda * nextnonterminal * lastgaelam
                returns = advantages + values

            b_states = states.reshape(-1, state_dim)
            b_actor_inputs = actor_inputs.reshape(-1, state_dim + action_dim)
            b_residuals = residuals.reshape(-1, action_dim)
            b_logprobs, b_advantages = logprobs.reshape(-1), advantages.reshape(-1)
            b_returns, b_values = returns.reshape(-1), values.reshape(-1)

            # PPO update (critic only during warm-up)
            update_start = time.perf_counter()
            b_inds = np.arange(args.batch_size)
            clipfracs, approx_kl, old_approx_kl = [], torch.zeros(()), torch.zeros(())
            pg_loss = entropy_loss = torch.zeros(())
            for epoch in range(args.update_epochs):
                np.random.shuffle(b_inds)
                for start in range(0, args.batch_size, args.minibatch_size):
                    mb = b_inds[start : start + args.minibatch_size]
                    _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_actor_inputs[mb], b_residuals[mb])
                    newvalue = newvalue.view(-1)
                    if args.clip_vloss:
                        v_unclipped = (newvalue - b_returns[mb]) ** 2
                        v_clipped = b_values[mb] + torch.clamp(newvalue - b_values[mb], -args.clip_coef, args.clip_coef)
                        v_loss = 0.5 * torch.max(v_unclipped, (v_clipped - b_returns[mb]) ** 2).mean()
                    else:
                        v_loss = 0.5 * ((newvalue - b_returns[mb]) ** 2).mean()

                    if warmup:
                        loss = v_loss * args.vf_coef
                    else:
                        logratio = newlogprob - b_logprobs[mb]
                        ratio = logratio.exp()
                        with torch.no_grad():
                            old_approx_kl = (-logratio).mean()
                            approx_kl = ((ratio - 1) - logratio).mean()
                            clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean().item())
                        mb_adv = b_advantages[mb]
                        if args.norm_adv:
                            mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                        pg_loss = torch.max(
                            -mb_adv * ratio, -mb_adv * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
                        ).mean()
                        entropy_loss = entropy.mean()
                        loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef

                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                    optimizer.step()
                if args.target_kl is not None and approx_kl > args.target_kl:
                    break

            # Normalization statistics change only here, between an update and the next rollout,
            # so the log-probs stored during a rollout stay valid for the update that uses them.
            agent.state_norm.update(b_states)
            completed_iteration, completed_step = iteration, global_step

            update_seconds = time.perf_counter() - update_start
            rollout_seconds = update_start - iteration_start
            y_pred, y_true = b_values.cpu().numpy(), b_returns.cpu().numpy()
            var_y = np.var(y_true)
            explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y

            # Curriculum on the square size, driven by recent training success
            recent_successes = (recent_successes + episode_successes)[-CURRICULUM_WINDOW:]
            if (
                tape_half_size > args.tape_half_size
                and len(recent_successes) >= CURRICULUM_WINDOW
                and np.mean(recent_successes) >= CURRICULUM_THRESHOLD
            ):
                tape_half_size = max(args.tape_half_size, tape_half_size - CURRICULUM_STEP)
                collector.set_tape_half_size(tape_half_size)
                recent_successes = []

            sps = int((global_step - steps_at_start) / (time.time() - start_time))
            scalars = {
                "charts/learning_rate": optimizer.param_groups[0]["lr"], "charts/alpha": alpha, "charts/SPS": sps,
                "charts/rollout_seconds": rollout_seconds, "charts/update_seconds": update_seconds,
                "charts/unstable_episodes": stats["unstable"], "curriculum/tape_half_size": tape_half_size,
                "losses/value_loss": v_loss.item(), "losses/policy_loss": pg_loss.item(),
                "losses/entropy": entropy_loss.item(), "losses/old_approx_kl": old_approx_kl.item(),
                "losses/approx_kl": approx_kl.item(), "losses/clipfrac": np.mean(clipfracs) if clipfracs else 0.0,
                "losses/explained_variance": explained_var, "residual/penalty": float(np.mean(stats["penalties"])),
                "residual/mean_abs": b_residuals.abs().mean().item(), "residual/std": agent.actor_logstd.exp().mean().item(),
            }
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, global_step)
            inference_time = float(np.mean(base.inference_seconds)) if base.inference_seconds else float("nan")
            if base.inference_seconds:
                writer.add_scalar("groot/inference_time", inference_time, global_step)
                writer.add_scalar("groot/batch_size", np.mean(base.inference_batch_sizes), global_step)
                writer.add_scalar("groot/calls", len(base.inference_seconds), global_step)
            base.inference_seconds.clear()
            base.inference_batch_sizes.clear()
            if episode_successes:
                writer.add_scalar("charts/episodic_return", np.mean(stats["returns"]), global_step)
                writer.add_scalar("charts/episodic_length", np.mean(stats["lengths"]), global_step)
                writer.add_scalar("residual/success_rate", np.mean(episode_successes), global_step)
                if not np.isnan(stats["final_distances"]).all():  # NaN: a simulation blow-up ended the episode
                    writer.add_scalar("task/dist_to_goal", np.nanmean(stats["final_distances"]), global_step)

            remaining = (args.num_iterations - iteration) * args.batch_size / max(sps, 1)
            print(
                f"iter {iteration}/{args.num_iterations} | step {global_step} | SPS {sps} | "
                f"success {np.mean(episode_successes) if episode_successes else float('nan'):.2f} "
                f"({len(episode_successes)} eps) | return {np.mean(stats['returns']) if episode_successes else float('nan'):.1f} | "
                f"alpha {alpha:.2f} | tape {tape_half_size:.3f} | GR00T {1000 * inference_time:.0f} ms/call"
                f"{' | critic warm-up' if warmup else ''} | eta {remaining / 60:.1f} min",
                flush=True,
            )

            is_last = iteration == args.num_iterations
            if args.eval_every and (iteration % args.eval_every == 0 or is_last):
                record = args.capture_video
                training_minutes = (time.time() - start_time - eval_seconds) / 60  # wall-clock of this process, evaluations excluded
                eval_start = time.time()
                success, mean_return, frames = evaluate(agent, eval_base, args, alpha, record)
                writer.add_scalar("eval/success_rate", success, global_step)
                writer.add_scalar("eval/episodic_return", mean_return, global_step)
                if record:
                    write_video(frames, run_dir / "videos" / f"eval_{global_step:08d}.mp4", writer, "eval/video",
                                global_step, so101_env.POLICY_HZ)
                eval_seconds += time.time() - eval_start
                writer.add_scalar("eval/training_minutes", training_minutes, global_step)
                print(f"  eval: success {success:.2f} over {args.eval_episodes} episodes, return {mean_return:.1f} "
                      f"(after {training_minutes:.1f} min of training)")
                if (success, mean_return) > best_eval:  # ties on success go to the higher return
                    best_eval = (success, mean_return)
                    save("best", iteration)
                save("latest", iteration)
        print(f"saved {save('final', completed_iteration)}")
    except KeyboardInterrupt:
        # Keep what the finished iterations learned; the interrupted rollout is dropped.
        interrupted = True
        global_step = completed_step
        latest = save("latest", completed_iteration)
        print(f"\ninterrupted: saved {latest} (iteration {completed_iteration}); continue with --resume {latest}")
        raise SystemExit(stop.exit_status) from None
    finally:
        collector.close(interrupted)
        close_writer(writer)
    return run_dir


if __name__ == "__main__":
    main(tyro.cli(Args))

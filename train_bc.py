"""Behaviour cloning of action chunks from demonstrations (CleanRL style, one file).

    python record_demos.py --n-episodes 200 --output-dir runs/demos/jacobian
    python train_bc.py --dataset runs/demos/jacobian
    python eval_policy.py --base-policy il --il-checkpoint runs/<run>/checkpoints/bc.pt

The policy is an MLP over the normalized state that predicts the next `chunk_size` normalized
joint deltas at once (an action chunk, as in ACT and GR00T). Why chunks from a plain MLP: the
demonstrator's state machine holds memory the state does not show (how long it has pressed,
which phase it is in), and a chunk commits to a whole short motion instead of re-deciding every
step, which damps the step-to-step jitter and the compounding errors of single-step cloning. An
MLP is enough for the 25-float state and trains in minutes on one CPU thread; the chunk stays
short (8 steps, 0.27 s at 30 Hz) because the `il` base executes it open-loop.

Targets: LeRobot datasets store absolute joint targets; the delta the env expects is recovered
as `(target - q) / act_scale`, clipped to [-1, 1]. Chunk steps past an episode's end are masked
out of the loss. Observation and action normalization live in the checkpoint.
"""

from __future__ import annotations

import os
import pathlib
import random
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import tyro
from torch.utils.tensorboard import SummaryWriter

import so101_env
from base_policies import make_base_policy
from bc_policy import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, SIZE_LIMITS, ChunkPolicy
from checkpoint_io import save_checkpoint  # atomic write: a crash leaves the previous file
from command_line import BadInput, option_problems
from episodes import run_episode
from lerobot_dataset import read_dataset
from run_dirs import create_run_dir
from so101_env import ACTION_DIM


@dataclass
class Args:
    dataset: str = "runs/demos/jacobian"
    """LeRobot dataset directory (record_demos.py writes one; so does lerobot-record --robot.type=so101_mujoco
    --robot.task_state=true; a real SO-101 recording works too)"""
    units: str | None = None
    """joint units of the dataset (radians, degrees, range); default: the ones it names, else the ones its values show"""
    act_scale: float | None = None
    """radians per unit of normalized action; default: the dataset's, else 0.02 (the env's default)"""
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """name of this experiment (part of the run directory name)"""
    run_dir: str = "runs"
    """directory that holds one sub-directory per run"""
    seed: int = 1
    """seed of the validation split, initialization and batches"""
    torch_threads: int = 1
    """torch intra-op threads (the machine is shared; one is plenty for this MLP)"""
    chunk_size: int = 8
    """actions predicted per query (0.27 s at 30 Hz)"""
    chunk_steps: int = 4
    """default number of chunk actions the il base executes open-loop before it queries again"""
    hidden_size: int = 256
    """width of the hidden layers"""
    num_hidden_layers: int = 3
    """number of hidden layers"""
    learning_rate: float = 1e-3
    """peak learning rate of AdamW (cosine decay to zero)"""
    weight_decay: float = 1e-4
    """AdamW weight decay"""
    batch_size: int = 256
    """frames per gradient step"""
    num_updates: int = 20_000
    """gradient steps"""
    val_fraction: float = 0.1
    """fraction of the episodes held out to measure the validation loss"""
    log_every: int = 1000
    """log the losses and print a progress line every this many updates"""
    eval_episodes: int = 10
    """after training, run this many env episodes with the il base (0 disables)"""
    output: str | None = None
    """checkpoint path; default runs/<run>/checkpoints/bc.pt"""
    overwrite: bool = False
    """replace the file at --output if there is one (without it, an existing --output is refused before training)"""


def make_chunks(actions: np.ndarray, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    """For each step t of one episode, actions t .. t+chunk_size-1 and a mask of those that exist."""
    length = len(actions)
    padded = np.concatenate([actions, np.zeros((chunk_size - 1, ACTION_DIM))])
    index = np.arange(length)[:, None] + np.arange(chunk_size)[None, :]
    return padded[index], index < length


def check_output(path: pathlib.Path, overwrite: bool) -> None:
    """Refuse an --output this run may not write: a directory, or an existing file unless --overwrite."""
    if path.is_dir():
        raise BadInput(f"--output {path} is a directory; give the path of the checkpoint file to write")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise BadInput(f"--output {path} already exists; pass --overwrite to replace it, or choose another path")


def main(args: Args) -> pathlib.Path:
    problems = option_problems(
        args,
        at_least=dict(seed=0, torch_threads=1, chunk_steps=1, batch_size=1, num_updates=1, log_every=1, eval_episodes=0,
                      weight_decay=0.0, val_fraction=0.0, **{name: low for name, (low, _) in SIZE_LIMITS.items()}),
        above=dict(act_scale=0.0, learning_rate=0.0),
        at_most=dict(seed=2**32 - 1, torch_threads=1024, chunk_steps=args.chunk_size, batch_size=65536, act_scale=0.2,
                     learning_rate=1.0, weight_decay=1.0, val_fraction=0.9, **{name: high for name, (_, high) in SIZE_LIMITS.items()}),
    )
    if problems:
        raise BadInput("invalid arguments:\n  " + "\n  ".join(problems))
    if args.output:
        check_output(pathlib.Path(args.output), args.overwrite)
    try:
        demos = read_dataset(args.dataset, args.units)
    except (FileNotFoundError, ValueError) as error:
        raise BadInput(f"cannot train: {error}") from None
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.torch_threads)

    act_scale = args.act_scale or demos.info.get("so101_sim", {}).get("act_scale", 0.02)
    episodes = demos.episodes
    order = np.random.permutation(len(episodes))
    n_val = int(round(args.val_fraction * len(episodes))) if len(episodes) > 1 else 0
    splits = {"val": order[:n_val], "train": order[n_val:]}

    def samples(indices):
        states, chunks, masks, clipped = [], [], [], 0
        for i in indices:
            state, target = episodes[i]["state"], episodes[i]["target"]
            actions = (target - state[:, :ACTION_DIM]) / act_scale
            clipped += int((np.abs(actions) > 1.0 + 1e-4).sum())
            chunk, mask = make_chunks(np.clip(actions, -1.0, 1.0), args.chunk_size)
            states.append(state)
            chunks.append(chunk)
            masks.append(mask)
        return (*(torch.as_tensor(np.concatenate(parts), dtype=torch.float32) for parts in (states, chunks, masks)), clipped)

    train_states, train_chunks, train_masks, clipped = samples(splits["train"])
    val_states, val_chunks, val_masks, _ = samples(splits["val"]) if n_val else (None, None, None, 0)
    if len(train_states) < 2:  # one frame has no spread: its normalization would be NaN
        raise BadInput(f"cannot train: dataset {args.dataset} gives {len(train_states)} training frame(s); behaviour "
                       f"cloning needs at least 2")
    state_dim = train_states.shape[1]
    print(
        f"dataset {args.dataset}: {len(episodes)} episodes ({len(splits['train'])} train, {n_val} val), "
        f"{len(train_states)} training frames, state dim {state_dim}, joint units {demos.units}, act_scale {act_scale}"
    )
    if clipped:
        print(f"  note: {clipped} action values exceeded act_scale per step and were clipped to [-1, 1]")

    policy = ChunkPolicy(state_dim, args.chunk_size, args.hidden_size, args.num_hidden_layers)
    # Floors keep near-constant features (the paper's height, its tilt) from blowing up.
    policy.state_mean.copy_(train_states.mean(0))
    policy.state_std.copy_(train_states.std(0).clamp(min=1e-2))
    valid_actions = train_chunks[:, 0]
    policy.action_mean.copy_(valid_actions.mean(0))
    policy.action_std.copy_(valid_actions.std(0).clamp(min=1e-2))
    optimizer = torch.optim.AdamW(policy.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.num_updates)

    def masked_mse(states, chunks, masks) -> torch.Tensor:
        target = (chunks - policy.action_mean) / policy.action_std
        error = (policy(states) - target).square().mean(-1)
        return (error * masks).sum() / masks.sum()

    run_dir = create_run_dir(args.run_dir, f"{args.exp_name}__{args.seed}__{int(time.time())}")  # once the data is usable
    output = pathlib.Path(args.output) if args.output else run_dir / "checkpoints" / "bc.pt"
    writer = SummaryWriter(str(run_dir))
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in vars(args).items()))
    start = time.time()
    for update in range(1, args.num_updates + 1):
        batch = torch.randint(len(train_states), (args.batch_size,))
        loss = masked_mse(train_states[batch], train_chunks[batch], train_masks[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if update % args.log_every == 0 or update == args.num_updates:
            writer.add_scalar("losses/train_mse", loss.item(), update)
            writer.add_scalar("charts/learning_rate", scheduler.get_last_lr()[0], update)
            writer.add_scalar("charts/SPS", update * args.batch_size / (time.time() - start), update)
            line = f"update {update}/{args.num_updates} | train mse {loss.item():.4f}"
            if n_val:
                with torch.no_grad():
                    val_loss = masked_mse(val_states, val_chunks, val_masks).item()
                writer.add_scalar("losses/val_mse", val_loss, update)
                line += f" | val mse {val_loss:.4f}"
            print(f"{line} | {time.time() - start:.0f} s", flush=True)

    if args.output:
        check_output(output, args.overwrite)  # again: another run may have written it meanwhile
    save_checkpoint(
        output,
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "model": policy.state_dict(),
            "state_dim": state_dim,
            "action_dim": ACTION_DIM,
            "chunk_size": args.chunk_size,
            "chunk_steps": args.chunk_steps,
            "hidden_size": args.hidden_size,
            "num_hidden_layers": args.num_hidden_layers,
            "act_scale": act_scale,
            "state_names": demos.state_names,
            "dataset": {"path": str(args.dataset), "units": demos.units, "episodes": len(episodes),
                        "robot_type": demos.info.get("robot_type"), "fps": demos.info.get("fps")},
            "args": asdict(args),
        },
    )
    print(f"saved {output}")

    if args.eval_episodes and state_dim != so101_env.STATE_DIM:
        print(f"no env evaluation: the env needs states of size {so101_env.STATE_DIM}, this policy reads {state_dim}")
    elif args.eval_episodes:
        base = make_base_policy("il", num_envs=1, act_scale=act_scale, checkpoint=str(output))
        env = so101_env.SO101PaperSquareEnv(act_scale=act_scale)
        # Seeds far from eval_policy's 0..99 and record_demos' range.
        successes = [run_episode(env, base, 50_000 + i).success for i in range(args.eval_episodes)]
        writer.add_scalar("eval/success_rate", np.mean(successes), args.num_updates)
        print(f"eval: il base success {np.mean(successes):.0%} over {args.eval_episodes} episodes")
    writer.close()
    return output


if __name__ == "__main__":
    main(tyro.cli(Args))

"""Rollouts collected by worker processes, one per slice of the envs (by default one per CPU core).

The training script's collector (its `RolloutCollector`, where `envs.step` happens) runs in each
worker on its own slice of the envs, with its own copy of the base policy. The agent's weights and
the rollout storage live in shared memory, so a worker runs its whole rollout without waiting for
anyone and the processes exchange one message per rollout. (A message per env step, as with a
vector env in worker processes, wakes the processes 256 times a rollout; on small virtual
machines that costs more than the physics it spreads out.)

Workers die with the training process however it dies: each holds only its own end of its pipe,
so a dead trainer means end-of-file for the worker, and on Linux the kernel also sends each
worker SIGKILL when its parent dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import signal
import sys
import traceback

import numpy as np
import torch

PR_SET_PDEATHSIG = 1


class RolloutWorkers:
    """`make_collector(columns: slice)` collectors in `num_workers` forked processes, with the methods
    `collect(alpha, warmup) -> stats` and `set_tape_half_size(size)` of a single collector.

    `shared` are the modules and tensors the collectors read or write (the agent, the storage):
    they are moved to shared memory before the fork, so the optimizer's in-place updates reach the
    workers and the workers' writes reach the trainer."""

    def __init__(self, make_collector, num_envs: int, num_workers: int, shared: list, seed: int):
        for item in shared:
            item.share_memory() if isinstance(item, torch.nn.Module) else item.share_memory_()
        context = multiprocessing.get_context("fork")  # children inherit the shared agent and storage
        bounds = np.linspace(0, num_envs, num_workers + 1).astype(int)
        self._pipes, self._processes = [], []
        for worker, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
            parent, child = context.Pipe()
            # The trainer's ends of all pipes so far: the new worker closes its copies of them.
            trainer_ends = [*self._pipes, parent]
            process = context.Process(
                target=_serve_collector,
                args=(child, trainer_ends, make_collector, slice(int(start), int(stop)), seed + worker),
                daemon=True,
            )
            process.start()
            child.close()
            self._pipes.append(parent)
            self._processes.append(process)
        self._broadcast("ready")  # surface a failing env or base now, not in the first rollout

    def _broadcast(self, method: str, *args) -> list:
        for pipe in self._pipes:
            with contextlib.suppress(BrokenPipeError):  # a worker that failed has sent why and exited
                pipe.send((method, args))
        results = []
        for pipe in self._pipes:
            try:
                ok, result = pipe.recv()
            except EOFError:
                raise RuntimeError("a rollout worker process died (out of memory?); its output is above") from None
            if not ok:
                raise RuntimeError(f"a rollout worker failed in {method}:\n{result}")
            results.append(result)
        return results

    def collect(self, alpha: float, warmup: bool) -> dict:
        parts = self._broadcast("collect", alpha, warmup)
        # Each statistic is a list (concatenated across workers) or a count (added up).
        return {key: sum((part[key] for part in parts[1:]), parts[0][key]) for key in parts[0]}

    def set_tape_half_size(self, half_size: float) -> None:
        self._broadcast("set_tape_half_size", half_size)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    def close(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(("close", ()))
        for process in self._processes:
            process.join(timeout=2)
            if process.is_alive():  # still in an interrupted rollout
                process.terminate()


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _serve_collector(pipe, trainer_ends, make_collector, envs: slice, seed: int) -> None:
    _die_with_parent()
    for end in trainer_ends:  # else this worker would keep its own pipe open after the trainer died
        end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the training process's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the inherited kill-as-Ctrl-C handler
    torch.manual_seed(seed)  # each worker its own exploration noise
    collector = None
    try:
        collector = make_collector(envs)
        while True:
            method, args = pipe.recv()
            if method == "close":
                break
            try:
                pipe.send((True, None if method == "ready" else getattr(collector, method)(*args)))
            except Exception:
                pipe.send((False, traceback.format_exc()))
    except (EOFError, BrokenPipeError):
        pass  # the training process went away
    except Exception:
        pipe.send((False, traceback.format_exc()))  # the collector could not be built
    finally:
        if collector is not None:
            collector.close()

"""Demonstrations in LeRobot's dataset layout (v2.0): write them from the sim, read them back.

We follow LeRobot's `codebase_version` "v2.0" layout, one parquet file per episode:

    <root>/
      data/chunk-000/episode_000000.parquet   one row per frame (30 Hz)
      meta/info.json       fps, robot_type, features (dtype, shape, names), paths, totals
      meta/stats.json      per feature: mean, std, min, max, count
      meta/episodes.jsonl  one line per episode: episode_index, tasks, length
      meta/tasks.jsonl     one line per task: task_index, task

The reader also accepts v2.1 and v3.0 datasets, whose frames sit in parquet files under data/
too (v3.0 packs several episodes per file): it reads every parquet file under data/ and orders
the rows by episode_index and frame_index. It needs no meta/ file but info.json.

Features written from the sim (the 25-float env state split the way LeRobot splits sim state):

    observation.state              6  joint positions, in the dataset's joint units
    observation.environment_state  19 joint velocities (rad/s), paper pose (m, quaternion w x y z),
                                      gripper tip position (m), paper-to-goal vector (m)
    action                         6  commanded joint targets `q + act_scale * a`, in joint units
    next.reward, next.success, next.done, timestamp, frame_index, episode_index, index, task_index

`action` is an absolute joint target like the follower command of a real SO-101 recording,
not the env's normalized delta: a trainer recovers the delta as `(target - q) / act_scale`.

Joint units (`JOINT_UNITS`), per joint, from sim radians q with MuJoCo joint range [lo, hi]:

    radians   q (the simulator's own unit)
    degrees   arm joints q * 180 / pi; gripper 100 * (q - lo) / (hi - lo)     (LeRobot use_degrees=True)
    range     arm joints 200 * (q - lo) / (hi - lo) - 100; gripper as above  (LeRobot's older default)

LeRobot keeps the gripper in [0, 100] in both of its modes. The mapping assumes the model's zero
and joint range match the real arm's calibration (zero at mid-range, as in so101_new_calib).
Datasets we write name their units in info.json under `so101_sim.joint_units`; for other
datasets the reader takes them from the caller or infers them from the joint values (radians
within [-2 pi, 2 pi]; degrees when an arm joint passes 100) and asks when they are ambiguous.
"""

from __future__ import annotations

import functools
import json
import math
import os
import pathlib
import secrets
import shutil
import sys
from dataclasses import dataclass

import so101_env  # noqa: I001  first: it picks the headless OpenGL backend before mujoco loads

import mujoco
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from so101_env import ACTION_DIM, JOINT_NAMES, POLICY_HZ, STATE_DIM

CODEBASE_VERSION = "v2.0"
ROBOT_TYPE = "so101_follower"
JOINT_UNITS = ("radians", "degrees", "range")
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
TASK = "Slide the sheet of paper into the red tape square."

JOINT_FEATURE_NAMES = [f"{joint}.pos" for joint in JOINT_NAMES]
ENVIRONMENT_STATE_NAMES = (
    [f"{joint}.vel" for joint in JOINT_NAMES]
    + [f"paper.{axis}" for axis in ("x", "y", "z", "qw", "qx", "qy", "qz")]
    + [f"tip.{axis}" for axis in "xyz"]
    + [f"paper_to_goal.{axis}" for axis in "xyz"]
)
VECTOR_FEATURES = {
    "observation.state": JOINT_FEATURE_NAMES,
    "observation.environment_state": ENVIRONMENT_STATE_NAMES,
    "action": JOINT_FEATURE_NAMES,
}
SCALAR_FEATURES = {
    "next.reward": "float32",
    "next.success": "bool",
    "next.done": "bool",
    "timestamp": "float32",
    "frame_index": "int64",
    "episode_index": "int64",
    "index": "int64",
    "task_index": "int64",
}
JOINT_VALUED_FEATURES = ("observation.state", "action")


@functools.cache
def joint_ranges() -> tuple[np.ndarray, np.ndarray]:
    """(low, high) MuJoCo joint ranges in radians, in JOINT_NAMES order."""
    model = mujoco.MjModel.from_xml_path(str(so101_env.XML_PATH))
    ranges = np.array([model.jnt_range[model.joint(name).id] for name in JOINT_NAMES])
    return ranges[:, 0], ranges[:, 1]


def radians_to_units(q: np.ndarray, units: str) -> np.ndarray:
    """Sim joint radians (..., 6) to `units`."""
    if units == "radians":
        return q.copy()
    low, high = joint_ranges()
    fraction = (q - low) / (high - low)
    out = 200.0 * fraction - 100.0 if units == "range" else np.degrees(q)
    out[..., 5] = 100.0 * fraction[..., 5]
    return out


def units_to_radians(values: np.ndarray, units: str) -> np.ndarray:
    """Inverse of `radians_to_units`."""
    if units == "radians":
        return values.copy()
    low, high = joint_ranges()
    if units == "range":
        out = low + (values + 100.0) / 200.0 * (high - low)
    else:
        out = np.radians(values)
    out[..., 5] = low[5] + values[..., 5] / 100.0 * (high[5] - low[5])
    return out


def check_units(units: str) -> None:
    if units not in JOINT_UNITS:
        raise ValueError(f"unknown joint units {units!r}; choose one of {', '.join(JOINT_UNITS)}")


def is_lerobot_dataset(root: str | pathlib.Path) -> bool:
    """Whether `root` holds a LeRobot dataset: its meta/info.json is a JSON object with a
    `codebase_version` string and a `features` mapping (what every LeRobot version writes)."""
    info_path = pathlib.Path(root) / "meta" / "info.json"
    try:
        info = json.loads(info_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(info, dict) and isinstance(info.get("codebase_version"), str) and isinstance(info.get("features"), dict)


class DatasetWriter:
    """Writes episodes as they come (one parquet file each) beside `root`, and moves the dataset
    into `root` on `close` only once it is complete.

    Everything is written into a new staging directory next to `root`, `<name>.tmp-<pid>-<random>`.
    `close` writes meta/ there and publishes it: into `root` when `root` does not exist or is an
    empty directory; with `overwrite`, in place of the LeRobot dataset already in `root` (the old
    one is moved aside, the new one moved in, and only then is the old one removed). When no
    episode was added, or on `discard`, the staging directory is removed and `root` is left as it
    was. A non-empty `root` that is not a LeRobot dataset is refused whatever `overwrite` says:
    the writer deletes nothing it did not create but the old dataset that `overwrite` replaces.
    """

    def __init__(self, root: str | pathlib.Path, units: str, act_scale: float, provenance: dict, overwrite: bool = False):
        check_units(units)
        self.root = pathlib.Path(root)
        self._target = self.root.resolve()  # through a symbolic link: renames happen beside the real directory
        self.replaces_dataset = _check_target(self.root, self._target, overwrite)
        """whether `close` replaces a dataset already in `root` (only with `overwrite`)"""
        self._created_parents = _make_parents(self._target.parent)
        self.staging = _unique_sibling(self._target, "tmp")
        """the directory being written; it becomes `root` (or its contents do) on `close`"""
        try:
            self.staging.mkdir()
        except BaseException:
            _remove_empty(self._created_parents)
            raise
        self.state = "open"
        """open; published (the dataset is in `root`); discarded; or kept (publishing failed: the
        complete dataset was left in `staging`)"""
        self.units = units
        self.act_scale = act_scale
        self.provenance = provenance
        self.lengths: list[int] = []
        self.columns: dict[str, list[np.ndarray]] = {name: [] for name in (*VECTOR_FEATURES, "next.reward")}

    def add_episode(self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray, success: bool) -> None:
        """One episode from the env: states (T, 25) radians, normalized actions (T, 6), rewards (T,)."""
        states = np.asarray(states, dtype=np.float64)
        actions = np.asarray(actions, dtype=np.float64)
        length = len(states)
        if self.state != "open":
            raise RuntimeError(f"the dataset writer for {self.root} is already {self.state}")
        if states.shape != (length, STATE_DIM) or actions.shape != (length, ACTION_DIM) or length == 0:
            raise ValueError(f"an episode needs states (T, {STATE_DIM}) and actions (T, {ACTION_DIM}), T > 0")
        q = states[:, :ACTION_DIM]
        episode_index, first_index = len(self.lengths), sum(self.lengths)
        vectors = {
            "observation.state": radians_to_units(q, self.units),
            "observation.environment_state": states[:, ACTION_DIM:],
            "action": radians_to_units(q + self.act_scale * np.clip(actions, -1.0, 1.0), self.units),
        }
        done = np.zeros(length, dtype=bool)
        done[-1] = True
        frames = np.arange(length)
        table = pa.table(
            {
                **{name: _vector_column(values) for name, values in vectors.items()},
                "next.reward": pa.array(np.asarray(rewards, dtype=np.float32)),
                "next.success": pa.array(done & success),
                "next.done": pa.array(done),
                "timestamp": pa.array((frames / POLICY_HZ).astype(np.float32)),
                "frame_index": pa.array(frames, pa.int64()),
                "episode_index": pa.array(np.full(length, episode_index), pa.int64()),
                "index": pa.array(first_index + frames, pa.int64()),
                "task_index": pa.array(np.zeros(length, dtype=np.int64)),
            }
        )
        path = self.staging / DATA_PATH.format(episode_chunk=episode_index // CHUNKS_SIZE, episode_index=episode_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        for name, values in vectors.items():
            self.columns[name].append(values)
        self.columns["next.reward"].append(np.asarray(rewards, dtype=np.float64)[:, None])
        self.lengths.append(length)

    def close(self) -> bool:
        """Finish: with at least one episode, write meta/ and move the dataset into `root`; with
        none, discard what was written. Returns whether `root` now holds the new dataset."""
        if self.state != "open":
            return self.state == "published"
        if not self.lengths:
            self.discard()
            return False
        try:
            self._write_meta()
        except BaseException:
            self.discard()
            raise
        self._publish()
        return True

    def discard(self) -> None:
        """Remove the staging directory and any parent directories the writer made; `root` is
        left as it was. Does nothing once the dataset is published (or kept after a failure)."""
        if self.state != "open":
            return
        self.state = "discarded"
        shutil.rmtree(self.staging, ignore_errors=True)  # made by this writer under a fresh name
        _remove_empty(self._created_parents)

    def _publish(self) -> None:
        target, staging = self._target, self.staging
        try:
            if self.replaces_dataset:
                if not is_lerobot_dataset(target):
                    raise FileExistsError(f"{self.root} no longer holds a LeRobot dataset; not replacing it")
                aside = _unique_sibling(target, "old")
                os.rename(target, aside)
                try:
                    os.rename(staging, target)
                except BaseException:
                    os.rename(aside, target)
                    raise
                self.state = "published"
                try:
                    shutil.rmtree(aside)  # the old dataset that `overwrite` asked to replace
                except OSError as error:
                    print(f"warning: the old dataset, moved aside to {aside}, could not be removed: {error}", file=sys.stderr)
            elif not target.exists():
                os.rename(staging, target)
                self.state = "published"
            else:
                if not target.is_dir() or any(target.iterdir()):
                    raise FileExistsError(f"{self.root} was written to by someone else while recording; not writing into it")
                # Keep the (empty) directory the user made; meta/ goes last, so a reader never
                # sees an info.json before the data it describes.
                for name in sorted(os.listdir(staging), key=lambda name: name == "meta"):
                    os.rename(staging / name, target / name)
                staging.rmdir()
                self.state = "published"
        except Exception as error:
            if self.state == "published":
                raise
            self.state = "kept"  # the dataset is complete: leave it where the message says
            raise OSError(f"could not move the new dataset into {self.root} ({error}); it is complete in {staging}") from error
        except BaseException:
            self.discard()  # interrupted: `root` is as it was (or already published, then this does nothing)
            raise

    def _write_meta(self) -> None:
        """Write meta/: info.json, stats.json, episodes.jsonl, tasks.jsonl."""
        meta = self.staging / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": ROBOT_TYPE,
            "total_episodes": len(self.lengths),
            "total_frames": sum(self.lengths),
            "total_tasks": 1,
            "total_videos": 0,
            "total_chunks": math.ceil(len(self.lengths) / CHUNKS_SIZE),
            "chunks_size": CHUNKS_SIZE,
            "fps": POLICY_HZ,
            "splits": {"train": f"0:{len(self.lengths)}"},
            "data_path": DATA_PATH,
            "video_path": None,
            "features": {
                **{name: {"dtype": "float32", "shape": [len(names)], "names": names} for name, names in VECTOR_FEATURES.items()},
                **{name: {"dtype": dtype, "shape": [1], "names": None} for name, dtype in SCALAR_FEATURES.items()},
            },
            # Not part of LeRobot's schema (its loaders ignore extra keys): how to read the joints back.
            "so101_sim": {"joint_units": self.units, "act_scale": self.act_scale, **self.provenance},
        }
        stats = {}
        for name, chunks in self.columns.items():
            if chunks:
                values = np.concatenate(chunks)
                stats[name] = {
                    "mean": values.mean(0).tolist(),
                    "std": values.std(0).tolist(),
                    "min": values.min(0).tolist(),
                    "max": values.max(0).tolist(),
                    "count": [len(values)],
                }
        _write_text(meta / "info.json", json.dumps(info, indent=2))
        _write_text(meta / "stats.json", json.dumps(stats, indent=2))
        _write_text(meta / "tasks.jsonl", json.dumps({"task_index": 0, "task": TASK}) + "\n")
        episodes = [{"episode_index": i, "tasks": [TASK], "length": n} for i, n in enumerate(self.lengths)]
        _write_text(meta / "episodes.jsonl", "".join(json.dumps(e) + "\n" for e in episodes))


def _check_target(root: pathlib.Path, target: pathlib.Path, overwrite: bool) -> bool:
    """Refuse a `root` the writer may not fill; True when it holds a dataset to replace."""
    if not target.exists():
        return False
    if not target.is_dir():
        raise FileExistsError(f"{root} exists and is not a directory")
    if is_lerobot_dataset(target):
        if not overwrite:
            raise FileExistsError(f"{root} already holds a dataset; pass --overwrite to replace it or choose another directory")
        return True
    if any(target.iterdir()):
        raise FileExistsError(
            f"{root} is not empty and holds no LeRobot dataset (no valid meta/info.json); refusing to write into it "
            "(--overwrite only replaces a dataset): choose a new or empty directory"
        )
    return False


def _make_parents(path: pathlib.Path) -> list[pathlib.Path]:
    """mkdir -p `path`; returns the directories it made, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    made: list[pathlib.Path] = []
    try:
        for directory in reversed(missing):
            directory.mkdir()
            made.insert(0, directory)
    except BaseException:
        _remove_empty(made)
        raise
    return made


def _remove_empty(directories: list[pathlib.Path]) -> None:
    for directory in directories:
        try:
            directory.rmdir()  # only while empty: something else may have been put there meanwhile
        except OSError:
            break


def _unique_sibling(target: pathlib.Path, kind: str) -> pathlib.Path:
    """A path beside `target` (same filesystem, so renames are atomic) that does not exist yet."""
    while True:
        path = target.with_name(f"{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")
        if not path.exists() and not path.is_symlink():
            return path


def _vector_column(values: np.ndarray) -> pa.Array:
    values = np.ascontiguousarray(values, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def _write_text(path: pathlib.Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


@dataclass
class Demonstrations:
    """Episodes read from a dataset, joints converted to sim radians."""

    episodes: list[dict[str, np.ndarray]]
    """per episode: `state` (T, D) observation, joints in radians; `target` (T, 6) joint targets in radians"""
    state_names: list[str]
    units: str
    info: dict


def read_dataset(root: str | pathlib.Path, units: str | None = None) -> Demonstrations:
    """Read a LeRobot v2.x/v3.0 dataset's frames; the observation is `observation.state`
    followed by `observation.environment_state` when the dataset has one."""
    root = pathlib.Path(root)
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{root} is not a LeRobot dataset: {info_path} is missing")
    info = json.loads(info_path.read_text())
    features = info.get("features", {})
    missing = [name for name in ("observation.state", "action") if name not in features]
    if missing:
        raise ValueError(f"dataset {root} lacks the feature(s) {missing}; a BC dataset needs observation.state and action")
    files = sorted(root.glob("data/**/*.parquet"))
    if not files:
        raise FileNotFoundError(f"dataset {root} has no parquet files under data/")
    observation = ["observation.state"] + [n for n in ["observation.environment_state"] if n in features]
    columns = [*observation, "action", "episode_index", "frame_index"]
    table = pa.concat_tables([pq.read_table(f, columns=columns) for f in files])
    table = table.sort_by([("episode_index", "ascending"), ("frame_index", "ascending")])
    arrays = {name: _as_matrix(table.column(name)) for name in [*observation, "action"]}
    if arrays["observation.state"].shape[1] != ACTION_DIM or arrays["action"].shape[1] != ACTION_DIM:
        raise ValueError(f"dataset {root}: observation.state and action must hold the {ACTION_DIM} SO-101 joints")

    units = units or info.get("so101_sim", {}).get("joint_units") or _infer_units(arrays, root)
    check_units(units)
    for name in JOINT_VALUED_FEATURES:
        arrays[name] = units_to_radians(arrays[name], units)

    state = np.concatenate([arrays[name] for name in observation], axis=1)
    episode_index = table.column("episode_index").to_numpy()
    starts = np.flatnonzero(np.r_[True, episode_index[1:] != episode_index[:-1]])
    ends = np.r_[starts[1:], len(episode_index)]
    episodes = [{"state": state[a:b], "target": arrays["action"][a:b]} for a, b in zip(starts, ends)]
    names = [n for name in observation for n in (features[name].get("names") or [])]
    return Demonstrations(episodes=episodes, state_names=names, units=units, info=info)


def _as_matrix(column: pa.ChunkedArray) -> np.ndarray:
    """A list<float> or fixed_size_list<float> column as an (N, D) float64 array."""
    flat = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return flat.astype(np.float64).reshape(len(column), -1)


def units_from_extent(extent: np.ndarray) -> str | None:
    """Joint units from the largest |value| per joint (6, JOINT_NAMES order), or None if unclear.

    Radians when no joint leaves [-2 pi, 2 pi] (no joint turns further); degrees when an arm joint
    passes 100 (LeRobot's normalized range cannot); otherwise degrees and LeRobot's range both fit.
    """
    if extent.max() <= 2 * math.pi:
        return "radians"
    if extent[:5].max() > 100:
        return "degrees"
    return None


def _infer_units(arrays: dict[str, np.ndarray], root: pathlib.Path) -> str:
    extent = np.max([np.abs(arrays[name]).max(0) for name in JOINT_VALUED_FEATURES], axis=0)
    units = units_from_extent(extent)
    if units is not None:
        return units
    raise ValueError(
        f"dataset {root} does not name its joint units and its joint values (up to {extent.max():.1f}) fit both "
        f"degrees and LeRobot's range ([-100, 100] arm, [0, 100] gripper); pass the units explicitly"
    )

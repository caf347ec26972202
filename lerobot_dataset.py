"""Demonstrations in LeRobot's dataset layout (v2.0; v2.1 with camera videos): write them from
the sim, read them back.

We follow LeRobot's `codebase_version` "v2.0" layout, one parquet file per episode:

    <root>/
      data/chunk-000/episode_000000.parquet   one row per frame (30 Hz)
      meta/info.json       fps, robot_type, features (dtype, shape, names), paths, totals
      meta/stats.json      per feature: mean, std, min, max, count
      meta/episodes.jsonl  one line per episode: episode_index, tasks, length
      meta/tasks.jsonl     one line per task: task_index, task

With cameras (`DatasetWriter(cameras=...)`) the dataset is LeRobot "v2.1" with video features,
the layout Isaac-GR00T's fine-tuning reads as well:

      videos/chunk-000/observation.images.top_view/episode_000000.mp4   frame i = parquet row i
      videos/chunk-000/observation.images.wrist/episode_000000.mp4
      meta/info.json            + features of dtype "video" (shape [H, W, 3], fps, codec), video_path,
                                  total_videos (episodes x cameras)
      meta/episodes_stats.jsonl one line per episode: min, max, mean, std, count of every feature
                                  (images per channel, shape [3, 1, 1], in [0, 1])
      meta/stats.json           mean, std, min, max, q01, q99 per parquet feature: the form
                                  Isaac-GR00T validates (it would choke on a `count` entry there;
                                  LeRobot v2.1 reads episodes_stats.jsonl instead)
      meta/modality.json        Isaac-GR00T's key map: state/action slices single_arm (0:5) and
                                  gripper (5:6), video top_view/wrist, task from task_index

Images are not in the parquet files (LeRobot keeps video features in the MP4 files only). The
videos are H.264 (libx264, CRF 18, yuv420p, a keyframe every 2 frames as LeRobot does, for cheap
random access), not LeRobot's default AV1: decord, the video backend of Isaac-GR00T's fine-tuning,
cannot decode AV1 (dmlc/decord#319), while LeRobot, PyAV, decord, OpenCV and browsers all read
H.264. yuv420p halves the colour resolution, so sharp colour edges come back blurred (luma stays
within about 1-2 levels on average); `read_video_frames` decodes them.

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

import contextlib
import functools
import json
import math
import os
import pathlib
import shutil
from dataclasses import dataclass, field

import so101_env  # noqa: I001  first: it picks the headless OpenGL backend before mujoco loads

import imageio_ffmpeg
import mujoco
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from run_utils import replace_directory, unique_sibling
from so101_env import ACTION_DIM, JOINT_NAMES, POLICY_HZ, STATE_DIM

CODEBASE_VERSION = "v2.0"
VIDEO_CODEBASE_VERSION = "v2.1"
ROBOT_TYPE = "so101_follower"
JOINT_UNITS = ("radians", "degrees", "range")
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
IMAGE_KEY_PREFIX = "observation.images."
TASK = "Slide the sheet of paper into the red tape square."
VIDEO_CODEC = "h264"
"""as LeRobot names it in info.json; encoded with libx264"""
VIDEO_PIX_FMT = "yuv420p"
VIDEO_ENCODER_OPTIONS = ["-crf", "18", "-g", "2", "-preset", "medium"]
SWS_FLAGS = ["-sws_flags", "bicubic+accurate_rnd+full_chroma_int"]
"""RGB <-> YUV conversions that round accurately and interpolate chroma: a smaller round-trip error"""
GR00T_GROUPS = {"single_arm": (0, 5), "gripper": (5, 6)}
"""Isaac-GR00T's SO-100/SO-101 state and action groups: slices of the 6 joints"""

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

    def __init__(self, root: str | pathlib.Path, units: str, act_scale: float, provenance: dict, overwrite: bool = False,
                 cameras: tuple[str, ...] | list[str] = ()):
        check_units(units)
        cameras = tuple(cameras)
        if len(set(cameras)) != len(cameras) or not all(isinstance(c, str) and c and "/" not in c for c in cameras):
            raise ValueError(f"cameras must be distinct names, got {cameras}")
        self.root = pathlib.Path(root)
        self._target = self.root.resolve()  # through a symbolic link: renames happen beside the real directory
        self.replaces_dataset = _check_target(self.root, self._target, overwrite)
        """whether `close` replaces a dataset already in `root` (only with `overwrite`)"""
        self._created_parents = _make_parents(self._target.parent)
        self.staging = unique_sibling(self._target, "tmp")
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
        self.cameras = cameras
        """camera names recorded as videos `observation.images.<camera>` (none: the v2.0 layout)"""
        self.image_shape: tuple[int, int, int] | None = None
        """(H, W, 3) of every frame, set by the first episode"""
        self.episode_stats: list[dict] = []

    def add_episode(self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray, success: bool,
                    images: dict[str, np.ndarray] | None = None) -> None:
        """One episode from the env: states (T, 25) radians, normalized actions (T, 6), rewards (T,);
        with cameras, `images` {camera: (T, H, W, 3) uint8}, frame i seen with states[i]. The
        episode's files are complete when it returns, or removed when it raises (Ctrl-C too)."""
        states = np.asarray(states, dtype=np.float64)
        actions = np.asarray(actions, dtype=np.float64)
        length = len(states)
        if self.state != "open":
            raise RuntimeError(f"the dataset writer for {self.root} is already {self.state}")
        if states.shape != (length, STATE_DIM) or actions.shape != (length, ACTION_DIM) or length == 0:
            raise ValueError(f"an episode needs states (T, {STATE_DIM}) and actions (T, {ACTION_DIM}), T > 0")
        images = self._check_images(images, length)
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
        chunk = episode_index // CHUNKS_SIZE
        path = self.staging / DATA_PATH.format(episode_chunk=chunk, episode_index=episode_index)
        videos = {camera: self.staging / VIDEO_PATH.format(episode_chunk=chunk, video_key=IMAGE_KEY_PREFIX + camera,
                                                            episode_index=episode_index) for camera in images}
        try:
            for camera, frames in images.items():
                encode_video(videos[camera], frames)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
        except BaseException:
            for written in [path, *videos.values()]:  # this episode's files only: nothing half-written stays
                written.unlink(missing_ok=True)
            raise
        if self.cameras:
            stats = {name: _feature_stats(table.column(name)) for name in table.column_names}
            stats.update({IMAGE_KEY_PREFIX + camera: _image_stats(frames) for camera, frames in images.items()})
            self.episode_stats.append(stats)
        for name, values in vectors.items():
            self.columns[name].append(values)
        self.columns["next.reward"].append(np.asarray(rewards, dtype=np.float64)[:, None])
        self.lengths.append(length)

    def _check_images(self, images: dict[str, np.ndarray] | None, length: int) -> dict[str, np.ndarray]:
        if not self.cameras:
            if images:
                raise ValueError("this dataset writer records no cameras; pass cameras=... to record images")
            return {}
        if images is None or set(images) != set(self.cameras):
            raise ValueError(f"an episode needs images from the cameras {list(self.cameras)}, got {sorted(images or {})}")
        checked = {}
        for camera in self.cameras:
            frames = np.asarray(images[camera])
            shape = self.image_shape or frames.shape[1:]
            if (frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape != (length, *shape) or shape[2] != 3
                    or shape[0] % 2 or shape[1] % 2):
                raise ValueError(
                    f"camera {camera!r}: frames must be uint8 (T={length}, H, W, 3) with even H and W, the same for every "
                    f"camera and episode{f' {self.image_shape}' if self.image_shape else ''}; got {frames.dtype} {frames.shape}"
                )
            self.image_shape = tuple(int(n) for n in shape)
            checked[camera] = frames
        return checked

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
                replace_directory(target, staging)  # the old dataset is the one `overwrite` asked to replace
                self.state = "published"
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
        """Write meta/: info.json, stats.json, episodes.jsonl, tasks.jsonl; with cameras also
        episodes_stats.jsonl and modality.json."""
        meta = self.staging / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        info = {
            "codebase_version": VIDEO_CODEBASE_VERSION if self.cameras else CODEBASE_VERSION,
            "robot_type": ROBOT_TYPE,
            "total_episodes": len(self.lengths),
            "total_frames": sum(self.lengths),
            "total_tasks": 1,
            "total_videos": len(self.lengths) * len(self.cameras),
            "total_chunks": math.ceil(len(self.lengths) / CHUNKS_SIZE),
            "chunks_size": CHUNKS_SIZE,
            "fps": POLICY_HZ,
            "splits": {"train": f"0:{len(self.lengths)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self.cameras else None,
            "features": {
                **{name: {"dtype": "float32", "shape": [len(names)], "names": names} for name, names in VECTOR_FEATURES.items()},
                **{IMAGE_KEY_PREFIX + camera: self._video_feature() for camera in self.cameras},
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
                }
                if self.cameras:  # Isaac-GR00T's form: it validates q01 and q99, and slices every entry per key
                    stats[name].update(q01=np.quantile(values, 0.01, axis=0).tolist(),
                                       q99=np.quantile(values, 0.99, axis=0).tolist())
                else:
                    stats[name]["count"] = [len(values)]
        if self.cameras:
            _write_text(meta / "episodes_stats.jsonl", "".join(
                json.dumps({"episode_index": i, "stats": s}) + "\n" for i, s in enumerate(self.episode_stats)))
            _write_text(meta / "modality.json", json.dumps(self._modality(), indent=2))
        _write_text(meta / "info.json", json.dumps(info, indent=2))
        _write_text(meta / "stats.json", json.dumps(stats, indent=2))
        _write_text(meta / "tasks.jsonl", json.dumps({"task_index": 0, "task": TASK}) + "\n")
        episodes = [{"episode_index": i, "tasks": [TASK], "length": n} for i, n in enumerate(self.lengths)]
        _write_text(meta / "episodes.jsonl", "".join(json.dumps(e) + "\n" for e in episodes))

    def _video_feature(self) -> dict:
        height, width, channels = self.image_shape
        return {
            "dtype": "video",
            "shape": [height, width, channels],
            "names": ["height", "width", "channels"],
            "info": {
                "video.fps": POLICY_HZ,
                "video.height": height,
                "video.width": width,
                "video.channels": channels,
                "video.codec": VIDEO_CODEC,
                "video.pix_fmt": VIDEO_PIX_FMT,
                "video.is_depth_map": False,
                "has_audio": False,
            },
        }

    def _modality(self) -> dict:
        """Isaac-GR00T's meta/modality.json: which slices of observation.state and action its
        `state.<group>` / `action.<group>` keys are, its `video.<camera>` keys, and where the task
        text comes from (task_index, looked up in tasks.jsonl)."""
        def groups(original_key: str) -> dict:
            return {name: {"start": start, "end": end, "original_key": original_key} for name, (start, end) in GR00T_GROUPS.items()}

        return {
            "state": groups("observation.state"),
            "action": groups("action"),
            "video": {camera: {"original_key": IMAGE_KEY_PREFIX + camera} for camera in self.cameras},
            "annotation": {"human.task_description": {"original_key": "task_index"}},
        }


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


def _vector_column(values: np.ndarray) -> pa.Array:
    values = np.ascontiguousarray(values, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def encode_video(path: pathlib.Path, frames: np.ndarray, fps: int = POLICY_HZ) -> None:
    """Write (T, H, W, 3) uint8 RGB frames (H, W even) as an H.264 MP4 at `fps`; frame i is shown at i / fps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    writer = imageio_ffmpeg.write_frames(
        str(path), (width, height), fps=fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out=VIDEO_PIX_FMT,
        quality=None, macro_block_size=1, ffmpeg_log_level="error", output_params=[*VIDEO_ENCODER_OPTIONS, *SWS_FLAGS],
    )
    writer.send(None)  # starts ffmpeg
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
    except BaseException:
        with contextlib.suppress(OSError, RuntimeError):  # the error (or Ctrl-C) that got us here is the one to report
            writer.close()  # stops ffmpeg
        raise
    writer.close()  # waits for ffmpeg to finish the file


def _feature_stats(column: pa.ChunkedArray) -> dict:
    """min, max, mean, std, count of one episode's parquet column (scalars as 1-vectors)."""
    values = _as_array(column)
    values = values[:, None] if values.ndim == 1 else values
    return {"min": values.min(0).tolist(), "max": values.max(0).tolist(), "mean": values.mean(0).tolist(),
            "std": values.std(0).tolist(), "count": [len(values)]}


def _image_stats(frames: np.ndarray) -> dict:
    """Per-channel min, max, mean, std of (T, H, W, 3) uint8 frames scaled to [0, 1], LeRobot's
    shape (3, 1, 1); count = T frames. From a histogram: exact, and no float copy of the video."""
    levels = np.arange(256) / 255.0
    counts = np.stack([np.bincount(frames[..., c].ravel(), minlength=256) for c in range(3)]).astype(np.float64)
    n = counts.sum(1)
    mean = counts @ levels / n
    std = np.sqrt(np.maximum(counts @ levels**2 / n - mean**2, 0.0))
    present = counts > 0
    low = levels[present.argmax(1)]
    high = levels[255 - present[:, ::-1].argmax(1)]

    def per_channel(values: np.ndarray) -> list:
        return values.reshape(3, 1, 1).tolist()

    return {"min": per_channel(low), "max": per_channel(high), "mean": per_channel(mean), "std": per_channel(std),
            "count": [len(frames)]}


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
    episode_indices: list[int] = field(default_factory=list)
    """the dataset's episode_index of each entry of `episodes` (what `read_video_frames` takes)"""
    cameras: list[str] = field(default_factory=list)
    """the dataset's video features (e.g. observation.images.top_view); `read_video_frames` decodes them"""


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
    observation = ["observation.state"] + [n for n in ["observation.environment_state"] if n in features]
    arrays = read_frames(root, [*observation, "action", "episode_index"])
    if arrays["observation.state"].shape[1] != ACTION_DIM or arrays["action"].shape[1] != ACTION_DIM:
        raise ValueError(f"dataset {root}: observation.state and action must hold the {ACTION_DIM} SO-101 joints")

    units = units or info.get("so101_sim", {}).get("joint_units") or _infer_units(arrays, root)
    check_units(units)
    for name in JOINT_VALUED_FEATURES:
        arrays[name] = units_to_radians(arrays[name], units)

    state = np.concatenate([arrays[name] for name in observation], axis=1)
    episode_index = arrays["episode_index"].astype(np.int64)
    starts = np.flatnonzero(np.r_[True, episode_index[1:] != episode_index[:-1]])
    ends = np.r_[starts[1:], len(episode_index)]
    episodes = [{"state": state[a:b], "target": arrays["action"][a:b]} for a, b in zip(starts, ends)]
    names = [n for name in observation for n in (features[name].get("names") or [])]
    return Demonstrations(episodes=episodes, state_names=names, units=units, info=info,
                          episode_indices=[int(i) for i in episode_index[starts]], cameras=video_keys(info))


def video_keys(info: dict) -> list[str]:
    """The video features of a dataset's info.json, in its order (e.g. observation.images.top_view)."""
    return [name for name, feature in info.get("features", {}).items() if isinstance(feature, dict) and feature.get("dtype") == "video"]


def video_file(root: str | pathlib.Path, episode_index: int, camera: str) -> pathlib.Path:
    """The MP4 file of one episode and camera (`top_view` or `observation.images.top_view`) in a
    LeRobot v2.x dataset, from info.json's video_path."""
    root = pathlib.Path(root)
    info = json.loads((root / "meta" / "info.json").read_text())
    keys = video_keys(info)
    key = camera if camera in keys else IMAGE_KEY_PREFIX + camera
    if key not in keys:
        raise KeyError(f"dataset {root} has no camera {camera!r}; its video features are {keys or 'none'}")
    template = info.get("video_path") or ""
    if "{episode_index" not in template:
        raise ValueError(f"dataset {root}: video_path {template!r} is not one file per episode (LeRobot v2.x); cannot read it")
    chunk = int(episode_index) // int(info.get("chunks_size", CHUNKS_SIZE))
    return root / template.format(episode_chunk=chunk, episode_index=int(episode_index), video_key=key)


def read_video_frames(root: str | pathlib.Path, episode_index: int, camera: str, frame_indices=None) -> np.ndarray:
    """One episode's frames of `camera` (`top_view` or `observation.images.top_view`) as a
    (T, H, W, 3) uint8 RGB array, frame i = the episode's parquet row i; with `frame_indices`
    (ints or a slice), only those frames.

    Decodes the whole file with the ffmpeg that imageio-ffmpeg ships (H.264 and AV1 both), about
    2 ms per 224 x 224 frame (0.25 s for a 130-frame episode on a busy 2-core CPU), most of it
    starting ffmpeg and converting colours: a trainer that samples many frames decodes each episode
    once and keeps the array (150 KB per frame and camera), e.g. behind `functools.lru_cache`,
    rather than calling this per frame."""
    path = video_file(root, episode_index, camera)
    if not path.is_file():
        raise FileNotFoundError(f"video {path} is missing")
    frames = decode_video(path)
    return frames if frame_indices is None else frames[frame_indices]


def decode_video(path: str | pathlib.Path) -> np.ndarray:
    """All frames of a video file as (T, H, W, 3) uint8 RGB."""
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24", output_params=SWS_FLAGS)
    try:
        width, height = next(reader)["size"]
        data = b"".join(reader)
    finally:
        reader.close()
    return np.frombuffer(bytearray(data), dtype=np.uint8).reshape(-1, height, width, 3)  # writable


def read_frames(root: str | pathlib.Path, columns: list[str]) -> dict[str, np.ndarray]:
    """The named columns of every parquet file under `root/data/`, in episode and frame order, as
    float64 arrays: (N, D) for vector features, (N,) for scalar ones."""
    files = sorted(pathlib.Path(root).glob("data/**/*.parquet"))
    if not files:
        raise FileNotFoundError(f"dataset {root} has no parquet files under data/")
    wanted = list(dict.fromkeys([*columns, "episode_index", "frame_index"]))
    table = pa.concat_tables([pq.read_table(f, columns=wanted) for f in files])
    table = table.sort_by([("episode_index", "ascending"), ("frame_index", "ascending")])
    return {name: _as_array(table.column(name)) for name in columns}


def _as_array(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A list<float> or fixed_size_list<float> column as (N, D) float64, a scalar column as (N,)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
        return column.flatten().to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(column), -1)
    return column.to_numpy(zero_copy_only=False).astype(np.float64)


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

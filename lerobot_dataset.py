"""Demonstrations in LeRobot's dataset layout (v2.0; v2.1 with camera videos; or v3.0): write them
from the sim, read them back.

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
                                  gripper (5:6), video front (observation.images.top_view) and wrist
                                  (observation.images.wrist), task from task_index

What Isaac-GR00T's loader needs besides the layout, and LeRobot reads either way:
  - timestamps that never fall before their frame's start: each is the smallest float32 at or after
    frame_index / fps (`frame_timestamps`), so a decoder that returns the frame shown at a time
    (torchcodec, Isaac's default backend) returns that frame and not the one before;
  - statistics of the values as stored (float32), so a constant column has min == max and Isaac's
    min-max normalization maps it to 0 as ours does;
  - the camera names of NVIDIA's stock SO-100 dual-camera config (GR00T_CAMERA_NAMES).

Images are not in the parquet files (LeRobot keeps video features in the MP4 files only). The
videos are H.264 (libx264, CRF 18, yuv420p, a keyframe every 2 frames as LeRobot does, for cheap
random access), not LeRobot's default AV1: decord, the video backend of Isaac-GR00T's fine-tuning,
cannot decode AV1 (dmlc/decord#319), while LeRobot, PyAV, decord, OpenCV and browsers all read
H.264. yuv420p halves the colour resolution, so sharp colour edges come back blurred (luma stays
within about 1-2 levels on average); `read_video_frames` decodes them.

With `DatasetWriter(version="v3.0")` the dataset is LeRobot v3.0, the only layout LeRobot >= 0.4
loads: the same features and values, episodes merged into files (each episode is first written as
above into the staging directory, then merged on `close`: parquet tables concatenated, videos joined
without re-encoding; a new file starts when one would pass LeRobot's size limits):

      data/chunk-000/file-000.parquet                       frames of many episodes
      videos/observation.images.top_view/chunk-000/file-000.mp4   those episodes' frames, one after another
      meta/info.json      codebase_version v3.0, LeRobot's fields only (it warns on others)
      meta/episodes/chunk-000/file-000.parquet  per episode: length, tasks, its data file and rows
                          (dataset_from_index, dataset_to_index), per camera its video file and
                          from/to_timestamp in it, and stats/<feature>/<stat>
      meta/tasks.parquet  task_index per task (the task is the pandas index, as LeRobot reads it)
      meta/stats.json     min, max, mean, std, count, q01, q10, q50, q90, q99 of every feature, images too
      meta/modality.json  as in v2.1 (with cameras); LeRobot leaves it alone
      meta/so101_sim.json joint units, act_scale and provenance (in info.json's so101_sim block in v2.x)

The readers take either version: the version is read from info.json. For a dataset with no
modality.json (a LeRobot user's own recording), `gr00t_modality` derives one from the features.

The reader also accepts other LeRobot v2.1 and v3.0 datasets, whose frames sit in parquet files under data/
too (v3.0 packs several episodes per file): it reads every parquet file under data/ and orders
the rows by episode_index and frame_index. It needs no meta/ file but info.json (and, for a v3.0
video, meta/episodes/ to find an episode in its file). What it reads is
checked before it is used: the sizes info.json declares against limits (`read_info`: feature shapes,
fps, counts), the stored columns against those shapes, every value read for NaN and infinity, a
video's frame size before it is decoded; a dataset that fails says where, in one line (ValueError).

Features written from the sim (the 25-float env state split the way LeRobot splits sim state):

    observation.state              6  joint positions, in the dataset's joint units
    observation.environment_state  19 joint velocities (rad/s), paper pose (m, quaternion w x y z),
                                      gripper tip position (m), paper-to-goal vector (m)
    action                         6  commanded joint targets `q + act_scale * a`, in joint units
    next.reward, next.success, next.done, timestamp, frame_index, episode_index, index, task_index

`action` is an absolute joint target like the follower command of a real SO-101 recording,
not the env's normalized delta: a trainer recovers the delta as `(target - q) / act_scale`.

A LeRobot recording of the simulated arm (`lerobot-record --robot.type=so101_mujoco --robot.task_state=true`)
has no observation.environment_state: LeRobot's recorder puts every number a robot reports into
observation.state, so the task state follows the joints there (RECORDED_STATE_NAMES, 25 values). The readers
tell the two layouts apart by the names of observation.state (`check_observation_state`), never by its width
alone: the BC reader takes the same 25-float state either way, GR00T the 6 joints (0:5 and 5:6).

Joint values are in one of joint_units.JOINT_UNITS (radians, degrees, LeRobot's range; see
joint_units.py). Datasets we write name their units in info.json under `so101_sim.joint_units`; for other
datasets the reader takes them from the caller or from what the values show (`units_shown`): with the task
state, the one unit in which the joints put the gripper tip where the task state says it was; else their
extent (radians within [-2 pi, 2 pi]; degrees when an arm joint passes 100). It asks when they are ambiguous.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import pathlib
import shutil
import subprocess
from dataclasses import dataclass, field

import imageio_ffmpeg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from joint_units import JOINT_UNITS, check_units, radians_to_units, units_from_extent, units_from_tip, units_to_radians
from run_dirs import refuse_mount_point, replace_directory, unique_sibling
from so101_env import ACTION_DIM, JOINT_NAMES, POLICY_HZ, STATE_DIM

CODEBASE_VERSION = "v2.0"
VIDEO_CODEBASE_VERSION = "v2.1"
V3_CODEBASE_VERSION = "v3.0"
VERSIONS = (VIDEO_CODEBASE_VERSION, V3_CODEBASE_VERSION)
"""what DatasetWriter writes: v2.1 (v2.0 without cameras) for Isaac-GR00T N1.5 and LeRobot <= 0.3, v3.0 for LeRobot >= 0.4"""
ROBOT_TYPE = "so101_follower"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V3_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_DATA_FILE_MB, V3_VIDEO_FILE_MB = 100, 200
"""LeRobot's default limits: a new data or video file starts when the current one would pass them"""
SIM_INFO_PATH = "meta/so101_sim.json"
"""v3.0: joint units, act_scale and provenance, kept out of info.json (LeRobot warns on and drops unknown keys there)"""
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
"""LeRobot 0.6's statistics: q01, q10, q50, q90, q99"""
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
GR00T_CAMERA_NAMES = {"top_view": "front", "wrist": "wrist"}
"""sim camera -> its name in meta/modality.json (Isaac's `video.<name>` key): the names NVIDIA's stock
`--data-config so100_dualcam` asks for (video.front, video.wrist); other cameras keep their own name"""

JOINT_FEATURE_NAMES = [f"{joint}.pos" for joint in JOINT_NAMES]
ENVIRONMENT_STATE_NAMES = (
    [f"{joint}.vel" for joint in JOINT_NAMES]
    + [f"paper.{axis}" for axis in ("x", "y", "z", "qw", "qx", "qy", "qz")]
    + [f"tip.{axis}" for axis in "xyz"]
    + [f"paper_to_goal.{axis}" for axis in "xyz"]
)
RECORDED_STATE_NAMES = [*JOINT_FEATURE_NAMES, *ENVIRONMENT_STATE_NAMES]
"""observation.state as LeRobot's recorder writes it from the so101_mujoco robot with --robot.task_state=true"""
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

# Limits on what a dataset may declare or hold, checked before anything is allocated from it.
MAX_VECTOR_WIDTH = 4096
"""values per frame of a non-image feature (a state or action vector): far more than any robot has"""
MAX_IMAGE_SIDE = 4096
"""pixels: the largest video height or width read (a video is decoded whole into memory)"""
MAX_FPS = 1000
MAX_COUNT = 10**9
"""the most episodes or frames a dataset may declare"""
MAX_ACT_SCALE = 0.2
"""radians per unit of normalized action: the most the env accepts"""


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
    So is a `root` that is a mount point, up front (the dataset could not be moved into it).

    `version` "v2.1" writes the v2.1 layout (v2.0 without cameras), "v3.0" LeRobot's v3.0 layout: the
    episodes are written the same way, then merged into v3.0's files by `close`.
    """

    def __init__(self, root: str | pathlib.Path, units: str, act_scale: float, provenance: dict, overwrite: bool = False,
                 cameras: tuple[str, ...] | list[str] = (), version: str = VIDEO_CODEBASE_VERSION):
        check_units(units)
        if version not in VERSIONS:
            raise ValueError(f"version must be one of {', '.join(VERSIONS)}, got {version!r}")
        cameras = tuple(cameras)
        if (not all(isinstance(c, str) and c and "/" not in c for c in cameras)
                or len({GR00T_CAMERA_NAMES.get(c, c) for c in cameras}) != len(cameras)):  # distinct there too
            raise ValueError(f"cameras must be distinct names, also as named in modality.json ({GR00T_CAMERA_NAMES}), got {cameras}")
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
        self.version = version
        self.episode_stats: list[dict] = []
        """per episode (v2.1 with cameras, and v3.0): the statistics of each feature"""
        self.histograms = {camera: np.zeros((3, 256)) for camera in cameras}
        """per camera, the count of each level of each channel over every frame: the images' statistics"""

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
                "timestamp": pa.array(frame_timestamps(length)),
                "frame_index": pa.array(frames, pa.int64()),
                "episode_index": pa.array(np.full(length, episode_index), pa.int64()),
                "index": pa.array(first_index + frames, pa.int64()),
                "task_index": pa.array(np.zeros(length, dtype=np.int64)),
            }
        )
        path = self._episode_data(episode_index)
        videos = {camera: self._episode_video(episode_index, camera) for camera in images}
        try:
            for camera, frames in images.items():
                encode_video(videos[camera], frames)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
        except BaseException:
            for written in [path, *videos.values()]:  # this episode's files only: nothing half-written stays
                written.unlink(missing_ok=True)
            raise
        if self.cameras or self.version == V3_CODEBASE_VERSION:
            quantiles = self.version == V3_CODEBASE_VERSION  # LeRobot 0.6's episode statistics have them; v2.1's did not
            stats = {name: _feature_stats(_as_array(table.column(name)), quantiles) for name in table.column_names}
            for camera, frames in images.items():
                histogram = _histogram(frames)
                self.histograms[camera] += histogram
                stats[IMAGE_KEY_PREFIX + camera] = _image_stats(histogram, length, quantiles)
            self.episode_stats.append(stats)
        for name in self.columns:  # as stored (float32): the statistics then describe what readers get
            self.columns[name].append(_as_array(table.column(name)).reshape(length, -1))
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

    def _episode_data(self, episode_index: int) -> pathlib.Path:
        """Where an episode's parquet file is written: its v2.x place, or for v3.0 the same under
        pending/ (merged and removed by `close`)."""
        chunk = episode_index // CHUNKS_SIZE
        return self._episodes_root() / DATA_PATH.format(episode_chunk=chunk, episode_index=episode_index)

    def _episode_video(self, episode_index: int, camera: str) -> pathlib.Path:
        chunk = episode_index // CHUNKS_SIZE
        return self._episodes_root() / VIDEO_PATH.format(episode_chunk=chunk, video_key=IMAGE_KEY_PREFIX + camera,
                                                         episode_index=episode_index)

    def _episodes_root(self) -> pathlib.Path:
        return self.staging / "pending" if self.version == V3_CODEBASE_VERSION else self.staging

    def _features(self) -> dict:
        return {
            **{name: {"dtype": "float32", "shape": [len(names)], "names": names} for name, names in VECTOR_FEATURES.items()},
            **{IMAGE_KEY_PREFIX + camera: self._video_feature() for camera in self.cameras},
            **{name: {"dtype": dtype, "shape": [1], "names": None} for name, dtype in SCALAR_FEATURES.items()},
        }

    def _write_meta(self) -> None:
        """Write meta/: info.json, stats.json, episodes.jsonl, tasks.jsonl; with cameras also
        episodes_stats.jsonl and modality.json. v3.0: merge the episodes first (`_write_v3`)."""
        meta = self.staging / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        if self.version == V3_CODEBASE_VERSION:
            self._write_v3(meta)
            return
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
            "features": self._features(),
            # Not part of LeRobot's schema (its loaders ignore extra keys): how to read the joints back.
            "so101_sim": self._sim_info(),
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
            _write_text(meta / "modality.json", json.dumps(gr00t_modality(info["features"]), indent=2))
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

    def _sim_info(self) -> dict:
        """What LeRobot's metadata has no place for: how to read the joints back, and how the episodes were made."""
        return {"joint_units": self.units, "act_scale": self.act_scale, **self.provenance}

    def _write_v3(self, meta: pathlib.Path) -> None:
        """Merge the pending episodes into LeRobot v3.0's data and video files, write meta/ (info.json,
        stats.json, tasks.parquet, episodes/, so101_sim.json, with cameras modality.json), remove pending/."""
        count = len(self.lengths)
        starts = np.cumsum([0, *self.lengths]).tolist()
        episodes = [{"episode_index": i, "tasks": [TASK], "length": n} for i, n in enumerate(self.lengths)]
        tables = []
        data_paths = [self._episode_data(i) for i in range(count)]
        for group, chunk, file in _file_groups([path.stat().st_size for path in data_paths], V3_DATA_FILE_MB):
            tables.append(pa.concat_tables([pq.read_table(data_paths[i]) for i in group]))
            path = self.staging / V3_DATA_PATH.format(chunk_index=chunk, file_index=file)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(tables[-1], path)
            for i in group:
                episodes[i].update({"data/chunk_index": chunk, "data/file_index": file,
                                    "dataset_from_index": starts[i], "dataset_to_index": starts[i + 1]})
        for camera in self.cameras:
            key = IMAGE_KEY_PREFIX + camera
            videos = [self._episode_video(i, camera) for i in range(count)]
            for group, chunk, file in _file_groups([path.stat().st_size for path in videos], V3_VIDEO_FILE_MB):
                concatenate_videos([videos[i] for i in group], self.staging / V3_VIDEO_PATH.format(
                    video_key=key, chunk_index=chunk, file_index=file))
                for i in group:  # exact: frame k of a file starts at k / fps
                    episodes[i].update({f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                                        f"videos/{key}/from_timestamp": (starts[i] - starts[group[0]]) / POLICY_HZ,
                                        f"videos/{key}/to_timestamp": (starts[i + 1] - starts[group[0]]) / POLICY_HZ})
        for row, stats in zip(episodes, self.episode_stats):
            row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
            row.update({f"stats/{feature}/{name}": value for feature, values in stats.items() for name, value in values.items()})
        episodes_path = self.staging / V3_EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes_path.parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(episodes), episodes_path)

        frames = pa.concat_tables(tables)
        stats = {name: _feature_stats(_as_array(frames.column(name)), quantiles=True) for name in frames.column_names}
        stats.update({IMAGE_KEY_PREFIX + camera: _image_stats(self.histograms[camera], starts[-1], quantiles=True)
                      for camera in self.cameras})
        features = self._features()
        info = {
            "codebase_version": V3_CODEBASE_VERSION,
            "robot_type": ROBOT_TYPE,
            "total_episodes": count,
            "total_frames": starts[-1],
            "total_tasks": 1,
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": V3_DATA_FILE_MB,
            "video_files_size_in_mb": V3_VIDEO_FILE_MB,
            "fps": POLICY_HZ,
            "splits": {"train": f"0:{count}"},
            "data_path": V3_DATA_PATH,
            "video_path": V3_VIDEO_PATH if self.cameras else None,
            "features": features,
        }
        pq.write_table(_tasks_table([TASK]), meta / "tasks.parquet")
        if self.cameras:
            _write_text(meta / "modality.json", json.dumps(gr00t_modality(features), indent=2))
        _write_text(self.staging / SIM_INFO_PATH, json.dumps(self._sim_info(), indent=2))
        _write_text(meta / "stats.json", json.dumps(stats, indent=2))
        _write_text(meta / "info.json", json.dumps(info, indent=2))
        shutil.rmtree(self._episodes_root())  # pending/: made by this writer, merged above


def gr00t_modality(features: dict) -> dict:
    """Isaac-GR00T's meta/modality.json for a dataset with these info.json features: the state and action
    groups of NVIDIA's SO-100/SO-101 configs (GR00T_GROUPS: single_arm 0:5, gripper 5:6 of observation.state
    and action), every video feature as `video.<camera>` (named as in GR00T_CAMERA_NAMES: video.front reads
    observation.images.top_view; other cameras keep their name), and the task text from task_index (looked up in
    the tasks file). An observation.state that holds the task state after the joints (`check_observation_state`)
    gives GR00T its joints alone. ValueError when the features do not fit: GR00T's groups need 6 joints and a camera."""
    widths = {name: list(features.get(name, {}).get("shape") or []) for name in JOINT_VALUED_FEATURES}
    if widths["action"] != [ACTION_DIM] or widths["observation.state"] not in ([ACTION_DIM], [len(RECORDED_STATE_NAMES)]):
        raise ValueError(f"GR00T's SO-100/SO-101 groups need observation.state and action of {ACTION_DIM} joints; "
                         f"info.json declares shapes {widths}: write a meta/modality.json for this robot")
    check_observation_state(features)
    videos = video_keys({"features": features})
    if not videos:
        raise ValueError("it has no video feature; GR00T needs camera images (record with --cameras)")

    def groups(original_key: str) -> dict:
        return {name: {"start": start, "end": end, "original_key": original_key} for name, (start, end) in GR00T_GROUPS.items()}

    def camera_name(key: str) -> str:
        camera = key.removeprefix(IMAGE_KEY_PREFIX)
        return GR00T_CAMERA_NAMES.get(camera, camera)

    return {
        "state": groups("observation.state"),
        "action": groups("action"),
        "video": {camera_name(key): {"original_key": key} for key in videos},
        "annotation": {"human.task_description": {"original_key": "task_index"}} if "task_index" in features else {},
    }


def _file_groups(sizes: list[int], limit_mb: float) -> list[tuple[list[int], int, int]]:
    """Episodes (by their own files' sizes) grouped into v3.0 files as LeRobot fills them: the next episode
    goes into a new file when it would take the current one past `limit_mb`. Returns (episodes, chunk, file)
    per file; LeRobot counts files 0..chunks_size-1 in a chunk, then starts the next chunk."""
    groups, total = [], 0
    for episode, size in enumerate(sizes):
        if not groups or total + size >= limit_mb * 1024**2:
            number = len(groups)
            groups.append(([], number // CHUNKS_SIZE, number % CHUNKS_SIZE))
            total = 0
        groups[-1][0].append(episode)
        total += size
    return groups


def _tasks_table(tasks: list[str]) -> pa.Table:
    """meta/tasks.parquet as LeRobot writes it with pandas: a task_index column, the task text as the
    (named) index, which pandas restores from the schema's metadata."""
    pandas_metadata = {
        "index_columns": ["task"],
        "column_indexes": [],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64", "metadata": None},
                    {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None}],
    }
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    return table.replace_schema_metadata({"pandas": json.dumps(pandas_metadata)})


def _check_target(root: pathlib.Path, target: pathlib.Path, overwrite: bool) -> bool:
    """Refuse a `root` the writer may not fill; True when it holds a dataset to replace."""
    if not target.exists():
        return False
    if not target.is_dir():
        raise FileExistsError(f"{root} exists and is not a directory")
    refuse_mount_point(target)  # now, not after recording: the staging directory beside it is on another filesystem
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


def frame_timestamps(length: int, fps: int = POLICY_HZ) -> np.ndarray:
    """float32 timestamps of frames 0 .. length-1, each the smallest float32 at or after its frame's start
    frame_index / fps. Rounded to the nearest float32 instead (as LeRobot's writer stores them), 43 % fall
    just before their frame, and a decoder that returns the frame shown at a time (torchcodec's
    get_frames_played_at, Isaac-GR00T N1.5's default) returns the previous frame for those rows; decoders
    that take the nearest frame (LeRobot's, decord) read either the same."""
    starts = np.arange(length) / fps
    stamps = starts.astype(np.float32)
    early = stamps < starts
    stamps[early] = np.nextafter(stamps[early], np.float32(np.inf))
    return stamps


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


def concatenate_videos(paths: list[pathlib.Path], output: pathlib.Path) -> None:
    """Join MP4 files of one encoding into `output`, frames one after another, without re-encoding (ffmpeg's
    concat demuxer, as LeRobot's writer does): the first frame of each input starts where the previous input ends."""
    output.parent.mkdir(parents=True, exist_ok=True)
    listing = output.with_name(output.name + ".ffconcat")
    quoted = [str(path.resolve()).replace("'", "'\\''") for path in paths]  # ffconcat's quoting of a single quote
    listing.write_text("ffconcat version 1.0\n" + "".join(f"file '{path}'\n" for path in quoted))
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing),
               "-c", "copy", "-movflags", "+faststart", str(output)]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    finally:
        listing.unlink(missing_ok=True)
    if result.returncode:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        raise OSError(f"could not join the videos into {output}: {lines[-1]}")


def _feature_stats(values: np.ndarray, quantiles: bool = False) -> dict:
    """min, max, mean, std, count (with `quantiles`, also LeRobot 0.6's q01 ... q99) of one feature's
    (N,) or (N, D) values (scalars as 1-vectors)."""
    values = values[:, None] if values.ndim == 1 else values
    stats = {"min": values.min(0).tolist(), "max": values.max(0).tolist(), "mean": values.mean(0).tolist(),
             "std": values.std(0).tolist(), "count": [len(values)]}
    if quantiles:
        stats.update({f"q{round(q * 100):02d}": np.quantile(values, q, axis=0).tolist() for q in QUANTILES})
    return stats


def _histogram(frames: np.ndarray) -> np.ndarray:
    """(3, 256): how many pixels of (T, H, W, 3) uint8 frames have each level, per channel."""
    return np.stack([np.bincount(frames[..., c].ravel(), minlength=256) for c in range(3)]).astype(np.float64)


def _image_stats(counts: np.ndarray, frames: int, quantiles: bool = False) -> dict:
    """Per-channel min, max, mean, std (and with `quantiles` q01 ... q99) of images scaled to [0, 1], from
    their (3, 256) level histogram, in LeRobot's shape (3, 1, 1); count = the number of frames. Exact, and
    no float copy of the video."""
    levels = np.arange(256) / 255.0
    n = counts.sum(1)
    mean = counts @ levels / n
    std = np.sqrt(np.maximum(counts @ levels**2 / n - mean**2, 0.0))
    present = counts > 0
    low = levels[present.argmax(1)]
    high = levels[255 - present[:, ::-1].argmax(1)]

    def per_channel(values: np.ndarray) -> list:
        return values.reshape(3, 1, 1).tolist()

    stats = {"min": per_channel(low), "max": per_channel(high), "mean": per_channel(mean), "std": per_channel(std),
             "count": [frames]}
    if quantiles:  # the lowest level at or above which the fraction q of the pixels lies below
        cumulative = counts.cumsum(1) / n[:, None]
        stats.update({f"q{round(q * 100):02d}": per_channel(levels[(cumulative < q).sum(1)]) for q in QUANTILES})
    return stats


def _write_text(path: pathlib.Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def read_json(path: pathlib.Path):
    """The value in a JSON file; FileNotFoundError if it is missing, ValueError naming it if it is not JSON."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} cannot be read as JSON ({error})") from None


def read_tasks(root: str | pathlib.Path, info: dict) -> dict[int, str]:
    """task_index -> task of a dataset (none when its tasks file is missing): meta/tasks.parquet in v3.0, whose
    task text is the pandas index (a column `task`, or `__index_level_0__` when unnamed), meta/tasks.jsonl in
    v2.x. ValueError naming a malformed line or file."""
    root = pathlib.Path(root)
    if is_v3(info):
        path = root / "meta" / "tasks.parquet"
        if not path.is_file():
            return {}
        try:
            with pq.ParquetFile(path) as file:
                names = file.schema_arrow.names
                text = next((name for name in ("task", "__index_level_0__") if name in names), None)
                table = file.read(columns=["task_index", text]) if text and "task_index" in names else None
        except (OSError, pa.ArrowException) as error:
            raise ValueError(f"cannot read {path}: {error}") from None
        if table is None or not pa.types.is_integer(table.schema.field("task_index").type):
            raise ValueError(f"{path} is not LeRobot's tasks table: an integer task_index column and the task as its index")
        return {int(index): str(task) for index, task in zip(table.column("task_index").to_pylist(), table.column(text).to_pylist())}
    path = root / "meta" / "tasks.jsonl"
    tasks = {}
    if path.is_file():
        for number, line in enumerate(path.read_bytes().splitlines(), 1):
            try:
                entry = json.loads(line) if line.strip() else None
                if entry is not None:
                    tasks[int(entry["task_index"])] = str(entry["task"])
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path}, line {number}, is not a task entry like "
                                 f'{{"task_index": 0, "task": "..."}} ({error})') from None
    return tasks


def is_v3(info: dict) -> bool:
    """Whether an info.json describes a LeRobot v3 dataset (episodes merged into files)."""
    return str(info.get("codebase_version", "")).startswith("v3")


def read_info(root: str | pathlib.Path) -> dict:
    """A dataset's meta/info.json, every size it declares checked before anything is read or allocated
    from it: each feature's shape (positive sizes, at most MAX_VECTOR_WIDTH values, or MAX_IMAGE_SIDE
    pixels a side for images), fps, episode and frame counts, and the so101_sim block record_demos.py
    writes (in v3.0 datasets, meta/so101_sim.json, returned as that block). FileNotFoundError if there is
    none; ValueError listing what is wrong."""
    path = pathlib.Path(root) / "meta" / "info.json"
    if not path.is_file():
        raise FileNotFoundError(f"{root} is not a LeRobot dataset: {path} is missing")
    info = read_json(path)
    if not isinstance(info, dict) or not isinstance(info.get("features"), dict):
        raise ValueError(f"{path} is not a LeRobot info.json: it has no features mapping")
    problems = []
    for name, feature in info["features"].items():
        shape = feature.get("shape") if isinstance(feature, dict) else None
        if isinstance(feature, dict) and feature.get("dtype") in ("video", "image"):
            if not (isinstance(shape, list) and len(shape) == 3 and all(_within(n, 1, MAX_IMAGE_SIDE, integer=True) for n in shape)):
                problems.append(f"feature {name!r} has shape {shape!r}, not [height, width, channels] of at most {MAX_IMAGE_SIDE} each")
        elif not (isinstance(shape, list) and shape and all(_within(n, 1, MAX_VECTOR_WIDTH, integer=True) for n in shape)
                  and math.prod(shape) <= MAX_VECTOR_WIDTH):
            problems.append(f"feature {name!r} has shape {shape!r}, not a list of positive sizes of at most {MAX_VECTOR_WIDTH} values")
    if "fps" in info and not (_within(info["fps"], 0, MAX_FPS) and info["fps"] > 0):
        problems.append(f"fps is {info['fps']!r}, not a number within (0, {MAX_FPS}]")
    for key, least in (("total_episodes", 0), ("total_frames", 0), ("chunks_size", 1)):
        if key in info and not _within(info[key], least, MAX_COUNT, integer=True):
            problems.append(f"{key} is {info[key]!r}, not an integer within [{least}, {MAX_COUNT}]")
    sim = info.get("so101_sim", {})
    sim_path = pathlib.Path(root) / SIM_INFO_PATH
    if "so101_sim" not in info and sim_path.is_file():  # v3.0 keeps it out of info.json
        sim = info["so101_sim"] = read_json(sim_path)
    if not isinstance(sim, dict):
        problems.append(f"so101_sim is {sim!r}, not a mapping")
        sim = {}
    if "joint_units" in sim and sim["joint_units"] not in JOINT_UNITS:
        problems.append(f"so101_sim.joint_units is {sim['joint_units']!r}, not one of {', '.join(JOINT_UNITS)}")
    if "act_scale" in sim and not (_within(sim["act_scale"], 0, MAX_ACT_SCALE) and sim["act_scale"] > 0):
        problems.append(f"so101_sim.act_scale is {sim['act_scale']!r}, not a number within (0, {MAX_ACT_SCALE}]")
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return info


def _within(value, low: float, high: float, integer: bool = False) -> bool:
    """Whether `value`, read from a file, is a number (an integer if `integer`) within [low, high]; NaN is not."""
    kinds = int if integer else (int, float)
    return isinstance(value, kinds) and not isinstance(value, bool) and low <= value <= high


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
    """Read a LeRobot v2.x/v3.0 dataset's frames; the observation is `observation.state` followed by
    `observation.environment_state` when the dataset has one: the 6 joints, then the task state when the dataset
    has it (in either layout, `check_observation_state`). Joint units: `units`, else the ones the dataset names,
    else the ones its values show (`units_shown`); ValueError naming --units when none of these tells."""
    root = pathlib.Path(root)
    info = read_info(root)
    features = info["features"]
    missing = [name for name in ("observation.state", "action") if name not in features]
    if missing:
        raise ValueError(f"dataset {root} lacks the feature(s) {missing}; a BC dataset needs observation.state and action")
    check_observation_state(features)
    observation = ["observation.state"] + [n for n in ["observation.environment_state"] if n in features]
    arrays = read_frames(root, [*observation, "action", "episode_index"])
    if arrays["action"].shape[1] != ACTION_DIM:
        raise ValueError(f"dataset {root}: action must hold the {ACTION_DIM} SO-101 joints")
    state = np.concatenate([arrays[name] for name in observation], axis=1)
    names = [n for name in observation for n in (features[name].get("names") or [])]

    units = units or info.get("so101_sim", {}).get("joint_units") or units_shown(state, names, arrays["action"])
    if units is None:
        raise ValueError(f"dataset {root} does not name its joint units and its values do not show them (degrees and "
                         f"LeRobot's [-100, 100] range both fit); pass --units degrees (LeRobot's use_degrees=true, its "
                         f"default) or --units range (use_degrees=false)")
    check_units(units)
    state[:, :ACTION_DIM] = units_to_radians(state[:, :ACTION_DIM], units)
    target = units_to_radians(arrays["action"], units)

    episode_index = arrays["episode_index"].astype(np.int64)
    starts = np.flatnonzero(np.r_[True, episode_index[1:] != episode_index[:-1]])
    ends = np.r_[starts[1:], len(episode_index)]
    episodes = [{"state": state[a:b], "target": target[a:b]} for a, b in zip(starts, ends)]
    return Demonstrations(episodes=episodes, state_names=names, units=units, info=info,
                          episode_indices=[int(i) for i in episode_index[starts]], cameras=video_keys(info))


def check_observation_state(features: dict) -> None:
    """Refuse, in one line (ValueError), a dataset's observation.state that is neither the 6 joints alone (named
    or not: SO-101 recordings of other LeRobot versions name them otherwise) nor the joints followed by the task
    state, named RECORDED_STATE_NAMES (as LeRobot's recorder writes the so101_mujoco robot with
    --robot.task_state=true): other values, or names missing, unknown or out of order."""
    feature = features["observation.state"]
    width = math.prod(feature.get("shape") or [0])
    names = feature.get("names")
    recorded = names == RECORDED_STATE_NAMES and width == len(names)
    if width == ACTION_DIM or (recorded and "observation.environment_state" not in features):
        return
    if not isinstance(names, list) or len(names) != width:
        problem = f"and {len(names)} names" if isinstance(names, list) else "and no list of their names"
    elif not recorded:
        i = next(i for i in range(max(width, len(RECORDED_STATE_NAMES))) if names[i:i + 1] != RECORDED_STATE_NAMES[i:i + 1])
        found, expected = (repr(n[i]) if i < len(n) else "nothing" for n in (names, RECORDED_STATE_NAMES))
        problem = f"whose name {i} is {found} where {expected} belongs"
    else:
        problem = "named as the joints and the task state, but the dataset has an observation.environment_state too"
    raise ValueError(f"observation.state holds {width} values {problem}; it must hold the {ACTION_DIM} SO-101 joints "
                     f"({', '.join(JOINT_FEATURE_NAMES)}), or those followed by the task state "
                     f"(lerobot_dataset.ENVIRONMENT_STATE_NAMES) as lerobot-record writes it from "
                     f"--robot.type=so101_mujoco --robot.task_state=true")


def units_shown(state: np.ndarray, state_names: list, actions: np.ndarray) -> str | None:
    """The joint units that the values of a dataset which does not name them show, or None: `state` (N, D) starts
    with the 6 joints, `state_names` names its columns, `actions` (N, 6) are joint targets. When the task state
    follows the joints (RECORDED_STATE_NAMES), the one unit in which the joints put the gripper tip where the
    task state says it was (joint_units.units_from_tip); otherwise, or when no single unit does, the one unit
    their extent allows (joint_units.units_from_extent)."""
    joints = state[:, :ACTION_DIM]
    if list(state_names or []) == RECORDED_STATE_NAMES:
        tip = ACTION_DIM + ENVIRONMENT_STATE_NAMES.index("tip.x")
        units = units_from_tip(joints, state[:, tip:tip + 3])
        if units is not None:
            return units
    return units_from_extent(np.maximum(np.abs(joints).max(0), np.abs(actions).max(0)))


def video_keys(info: dict) -> list[str]:
    """The video features of a dataset's info.json, in its order (e.g. observation.images.top_view)."""
    return [name for name, feature in info.get("features", {}).items() if isinstance(feature, dict) and feature.get("dtype") == "video"]


def video_segment(root: str | pathlib.Path, episode_index: int, camera: str) -> tuple[pathlib.Path, float, int | None]:
    """Where one episode of `camera` (`top_view` or `observation.images.top_view`) is: the MP4 file, the time to
    seek to in it, and how many frames to take (`decode_video`'s arguments). v2.x: the episode's own file
    (info.json's video_path), from 0, every frame (None). v3.0: the file meta/episodes/ names for the episode,
    from half a frame before its from_timestamp (so no rounding of that time skips or adds a frame), and
    (to_timestamp - from_timestamp) * fps frames."""
    root = pathlib.Path(root)
    info = read_info(root)
    keys = video_keys(info)
    key = camera if camera in keys else IMAGE_KEY_PREFIX + camera
    if key not in keys:
        raise KeyError(f"dataset {root} has no camera {camera!r}; its video features are {keys or 'none'}")
    template = info.get("video_path") or ""
    if not is_v3(info):
        if "{episode_index" not in template:
            raise ValueError(f"dataset {root}: video_path {template!r} is not one file per episode (LeRobot v2.x); cannot read it")
        chunk = int(episode_index) // int(info.get("chunks_size", CHUNKS_SIZE))
        return _dataset_path(root, template, episode_chunk=chunk, episode_index=int(episode_index), video_key=key), 0.0, None
    fps = info.get("fps", POLICY_HZ)
    names = [f"videos/{key}/{name}" for name in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")]
    entry, path = _episode_entry(root, int(episode_index), names)
    chunk, file, start, end = (entry[name] for name in names)
    frames = (end - start) * fps
    if not (0 <= chunk <= MAX_COUNT and 0 <= file <= MAX_COUNT and chunk % 1 == file % 1 == 0
            and 0 <= start < end <= MAX_COUNT and abs(frames - round(frames)) < 0.01):
        raise ValueError(f"{path}: episode {episode_index}'s {key} entry (chunk {chunk:g}, file {file:g}, from {start:g} s "
                         f"to {end:g} s) is not a file and a whole number of frames in it")
    path = _dataset_path(root, template, chunk_index=int(chunk), file_index=int(file), video_key=key)
    return path, max(start - 0.5 / fps, 0.0), round(frames)


def _dataset_path(root: pathlib.Path, template: str, **fields) -> pathlib.Path:
    """`root` / info.json's path template filled in; ValueError if the template asks for other fields."""
    try:
        return root / template.format(**fields)
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(f"dataset {root}: path template {template!r} in info.json cannot be filled in ({error!r})") from None


def _episode_entry(root: pathlib.Path, episode_index: int, names: list[str]) -> tuple[dict[str, float], pathlib.Path]:
    """The columns `names` of one episode's row in a v3.0 dataset's meta/episodes/ parquet files, and the file
    it is in; FileNotFoundError if no file has the episode, ValueError if a file cannot be read."""
    files = sorted((root / "meta" / "episodes").glob("**/*.parquet"))
    for path in files:
        arrays = _read_parquet(path, ["episode_index", *names])
        rows = np.flatnonzero(arrays["episode_index"] == episode_index)
        if len(rows):
            return {name: float(arrays[name][rows[0]]) for name in names}, path
    raise FileNotFoundError(f"dataset {root} has no episode {episode_index} in meta/episodes/ "
                            f"({len(files)} parquet files there); a v3.0 dataset lists each episode's place in its videos there")


def read_video_frames(root: str | pathlib.Path, episode_index: int, camera: str, frame_indices=None) -> np.ndarray:
    """One episode's frames of `camera` (`top_view` or `observation.images.top_view`) as a
    (T, H, W, 3) uint8 RGB array, frame i = the episode's parquet row i; with `frame_indices`
    (ints or a slice), only those frames.

    Decodes the episode's file (in v3.0, the episode's part of its file) with the ffmpeg that
    imageio-ffmpeg ships (H.264 and AV1 both), about
    2 ms per 224 x 224 frame (0.25 s for a 130-frame episode on a busy 2-core CPU), most of it
    starting ffmpeg and converting colours: a trainer that samples many frames decodes each episode
    once and keeps the array (150 KB per frame and camera), e.g. behind `functools.lru_cache`,
    rather than calling this per frame."""
    frames = decode_video(*video_segment(root, episode_index, camera))
    return frames if frame_indices is None else frames[frame_indices]


def decode_video(path: str | pathlib.Path, start: float = 0.0, max_frames: int | None = None) -> np.ndarray:
    """The frames of a video file that start at or after `start` seconds (the first `max_frames` of them, if
    given) as (T, H, W, 3) uint8 RGB. FileNotFoundError if it is missing; ValueError if ffmpeg cannot decode
    it, or before decoding if its frames are larger than MAX_IMAGE_SIDE."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video {path} is missing")
    seek = ["-ss", f"{start:.6f}"] if start > 0 else []  # before -i: from the keyframe before, frames before `start` dropped
    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24", input_params=seek, output_params=SWS_FLAGS)
        try:
            width, height = next(reader)["size"]
            if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
                raise ValueError(f"video {path} is {width} x {height} pixels; at most {MAX_IMAGE_SIDE} on a side is read")
            data = b"".join(itertools.islice(reader, max_frames))
        finally:
            reader.close()
    except (OSError, RuntimeError, StopIteration) as error:  # what imageio-ffmpeg raises for a file ffmpeg cannot read
        lines = [line for line in str(error).splitlines() if line.strip()] or ["no frames"]  # its first and ffmpeg's last
        raise ValueError(f"cannot decode video {path}: {lines[0]}{f' ({lines[-1]})' if len(lines) > 1 else ''}") from None
    return np.frombuffer(bytearray(data), dtype=np.uint8).reshape(-1, height, width, 3)  # writable


def read_frames(root: str | pathlib.Path, columns: list[str]) -> dict[str, np.ndarray]:
    """The named columns of every parquet file under `root/data/`, in episode and frame order, as
    float64 arrays: (N, D) for vector features, (N,) for scalar ones. Every column read is checked
    against the shape info.json declares and for NaN and infinite values: ValueError naming the file,
    the column, and the episode and frame."""
    info = read_info(root)
    files = sorted(pathlib.Path(root).glob("data/**/*.parquet"))
    if not files:
        raise FileNotFoundError(f"dataset {root} has no parquet files under data/")
    wanted = list(dict.fromkeys([*columns, "episode_index", "frame_index"]))
    parts = [_read_parquet(path, wanted, info["features"]) for path in files]
    arrays = {name: np.concatenate([part[name] for part in parts]) for name in wanted}
    if not len(arrays["episode_index"]):
        raise ValueError(f"dataset {root} has no frames: its parquet files are empty")
    order = np.lexsort((arrays["frame_index"], arrays["episode_index"]))
    return {name: arrays[name][order] for name in columns}


def _read_parquet(path: pathlib.Path, names: list[str], features: dict | None = None) -> dict[str, np.ndarray]:
    """Columns `names` (episode_index among them) of one parquet file as float64 arrays, checked as `read_frames` says."""
    try:
        with pq.ParquetFile(path) as file:
            missing = [name for name in names if name not in file.schema_arrow.names]
            table = None if missing else file.read(columns=names)
    except (OSError, pa.ArrowException) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    if missing:
        raise ValueError(f"{path} has no column {missing[0]!r}")
    arrays = {}
    for name in names:
        try:
            arrays[name] = _as_array(table.column(name))
        except ValueError as error:
            raise ValueError(f"{path}: column {name!r} {error}") from None
    for name, values in arrays.items():
        declared = (features or {}).get(name, {}).get("shape")
        if declared is not None and len(values) and values[0].size != math.prod(declared):
            raise ValueError(f"{path}: column {name!r} holds {values[0].size} values per frame, but info.json declares shape {declared}")
        bad = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(1))
        if len(bad):
            where = f"episode {arrays['episode_index'][bad[0]]:g}"
            if "frame_index" in arrays:
                where += f", frame {arrays['frame_index'][bad[0]]:g}"
            raise ValueError(f"{path}: column {name!r} holds NaN or infinite values, first in {where}; fix or leave out that episode")
    return arrays


def _as_array(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A list<float> or fixed_size_list<float> column as (N, D) float64, a scalar column as (N,);
    ValueError if it misses values, its rows differ in length, or it is not numeric."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    listed = pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type)
    values = column.flatten() if listed else column
    if column.null_count or values.null_count:
        raise ValueError("has missing values")
    if pa.types.is_list(column.type) and len(column.value_lengths().unique()) > 1:
        raise ValueError("holds rows of different lengths")
    try:
        values = values.to_numpy(zero_copy_only=False).astype(np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"is not numeric ({error})") from None
    return values.reshape(len(column), -1) if listed else values

"""record_demos.py --cameras: the top_view and wrist cameras as LeRobot v2.1 video features, read
back by lerobot_dataset.py; info.json, episodes_stats.jsonl, stats.json and Isaac-GR00T's
modality.json agree with the data, and what Isaac-GR00T's loader needs holds (timestamps, statistics
as stored, NVIDIA's camera names). Small images (64 px) and two short episodes keep it fast."""

import json
import shutil
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tyro

import finetune_groot
import lerobot_dataset
import record_demos
from base_policies import make_base_policy
from file_faults import edit_json
from joint_units import radians_to_units, units_to_radians
from lerobot_dataset import DatasetWriter, read_dataset, read_video_frames, video_segment
from so101_env import SO101PaperSquareEnv

SIZE = 64
CAMERAS = ("top_view", "wrist")
KEYS = [f"observation.images.{camera}" for camera in CAMERAS]
SO100_DUALCAM_KEYS = {"video": ["front", "wrist"], "state": ["single_arm", "gripper"], "action": ["single_arm", "gripper"],
                      "annotation": ["human.task_description"]}
"""the modality keys of NVIDIA's stock `--data-config so100_dualcam` (Isaac-GR00T N1.5's So100DualCamDataConfig)"""


def record(path, **overrides):
    # Seeds 2 and 3 are short Jacobian successes (about 111 and 115 steps).
    args = {"output_dir": str(path), "n_episodes": 2, "seed": 2, "max_attempts": 4, "dart_noise_std": 0.0,
            "cameras": True, "image_size": SIZE}
    return record_demos.main(record_demos.Args(**{**args, **overrides}))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The dataset, and the frames the recorder handed to the writer (the originals)."""
    path = tmp_path_factory.mktemp("video") / "demos"
    originals = []
    add_episode = DatasetWriter.add_episode

    def keep_images(self, *args, images=None, **kwargs):
        originals.append({camera: frames.copy() for camera, frames in images.items()})
        return add_episode(self, *args, images=images, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatasetWriter, "add_episode", keep_images)
        record(path)
    return path, originals


def meta(root, name):
    text = (root / "meta" / name).read_text()
    return [json.loads(line) for line in text.splitlines()] if name.endswith(".jsonl") else json.loads(text)


def parquet(root, episode):
    return pq.read_table(root / f"data/chunk-000/episode_{episode:06d}.parquet")


def test_layout_is_lerobot_v2_1_with_one_video_per_episode_and_camera(recorded):
    root, _ = recorded
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    videos = [f"videos/chunk-000/{key}/episode_{i:06d}.mp4" for key in KEYS for i in range(2)]
    data = [f"data/chunk-000/episode_{i:06d}.parquet" for i in range(2)]
    metas = [f"meta/{name}" for name in
             ("episodes.jsonl", "episodes_stats.jsonl", "info.json", "modality.json", "stats.json", "tasks.jsonl")]
    assert files == sorted(data + metas + videos)
    assert sorted(p.name for p in root.parent.iterdir()) == ["demos"]  # the staging directory is gone


def test_frames_read_back_equal_the_frames_written_within_codec_tolerance(recorded):
    root, originals = recorded
    lengths = [e["length"] for e in meta(root, "episodes.jsonl")]
    for episode, written in enumerate(originals):
        assert parquet(root, episode).num_rows == lengths[episode]
        for camera in CAMERAS:
            original = written[camera].astype(float)
            decoded = read_video_frames(root, episode, camera)
            assert decoded.dtype == np.uint8 and decoded.shape == (lengths[episode], SIZE, SIZE, 3)
            error = np.abs(decoded - original)
            # yuv420p keeps colour at half resolution: sharp colour edges blur, luma stays close.
            assert error.mean() < 8 and error.mean(axis=(1, 2, 3)).max() < 10
            luma = np.array([0.299, 0.587, 0.114])
            assert np.abs((decoded - original) @ luma).mean() < 2.5
            pooled = np.abs(pool(decoded) - pool(original))  # at the colour resolution
            assert pooled.mean() < 4 and np.percentile(pooled, 99.9) < 60
            # Frame i is frame i: consecutive frames differ less than the codec's error (the arm moves
            # a little at 30 Hz), so compare with the originals a few frames away, which moved more.
            own = error.mean()
            for offset in (5, 10):
                assert own < np.abs(decoded[offset:] - original[:-offset]).mean()
                assert own < np.abs(decoded[:-offset] - original[offset:]).mean()


def pool(frames):
    n, h, w, c = frames.shape
    return frames.astype(float).reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def test_video_frame_i_is_what_the_cameras_saw_with_state_i(recorded):
    """Re-run the deterministic demonstrator: its renders at steps 0..9 are the recorded frames."""
    root, originals = recorded
    env = SO101PaperSquareEnv(image_size=SIZE)
    demonstrator = make_base_policy("jacobian", num_envs=1)
    obs, _ = env.reset(seed=2)
    demonstrator.reset()
    states = read_dataset(root).episodes[0]["state"]
    try:
        for step in range(10):
            images = env.render_cameras()
            for camera in CAMERAS:
                np.testing.assert_array_equal(images[camera], originals[0][camera][step])
            np.testing.assert_allclose(obs, states[step], atol=1e-4)
            obs, *_ = env.step(np.clip(demonstrator.act(obs[None])[0], -1, 1))
    finally:
        env.close()


def test_info_json_describes_the_videos(recorded):
    root, _ = recorded
    info = meta(root, "info.json")
    assert info["codebase_version"] == "v2.1" and info["fps"] == 30
    assert info["total_episodes"] == 2 and info["total_videos"] == 4
    assert info["total_frames"] == sum(e["length"] for e in meta(root, "episodes.jsonl"))
    assert info["video_path"] == "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
    for key in KEYS:
        feature = info["features"][key]
        assert feature["dtype"] == "video" and feature["shape"] == [SIZE, SIZE, 3]
        assert feature["names"] == ["height", "width", "channels"]
        assert feature["info"] == {
            "video.fps": 30, "video.height": SIZE, "video.width": SIZE, "video.channels": 3, "video.codec": "h264",
            "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "has_audio": False,
        }
        for episode in range(2):
            path = root / info["video_path"].format(episode_chunk=0, video_key=key, episode_index=episode)
            assert video_segment(root, episode, key) == (path, 0.0, None)  # the whole file
    table = parquet(root, 0)
    assert not set(KEYS) & set(table.column_names)  # video features live in the MP4 files only
    assert set(table.column_names) == {name for name, f in info["features"].items() if f["dtype"] != "video"}
    np.testing.assert_allclose(table.column("timestamp").to_numpy(), table.column("frame_index").to_numpy() / 30, atol=1e-6)


def test_each_timestamp_is_the_first_float32_at_or_after_its_frames_start(recorded):
    """Not the nearest float32, which lies before the frame's start for 43 % of the rows: a decoder that returns
    the frame shown at a time (torchcodec, Isaac-GR00T's default backend) would return the previous frame."""
    root, _ = recorded
    for episode in range(2):
        table = parquet(root, episode)
        stamps, starts = table.column("timestamp").to_numpy(), table.column("frame_index").to_numpy() / 30
        assert stamps.dtype == np.float32 and (stamps >= starts).all()
        assert (np.nextafter(stamps, np.float32(-np.inf)) < starts).all()  # the smallest such float32
        assert np.abs(stamps - starts).max() < 1e-6


def decode_with_pyav(path):
    """Every frame of a video with PyAV (FFmpeg's libraries, which torchcodec and torchvision use): the RGB frames
    and each frame's exact start time, pts * time_base."""
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(frame.to_ndarray(format="rgb24"), frame.pts * stream.time_base) for frame in container.decode(stream)]
    return np.stack([image for image, _ in frames]), [start for _, start in frames]


def frame_played_at(starts, timestamp):
    """torchcodec's VideoDecoder.get_frames_played_at (Isaac-GR00T N1.5's default backend): the frame shown at
    `timestamp`, the last one that starts at or before it."""
    return int(np.searchsorted(starts, Fraction(float(timestamp)), side="right")) - 1


def nearest_frame(starts, timestamp):
    """decord in Isaac-GR00T, and LeRobot's decoders (within their tolerance): the frame whose start is nearest."""
    return int(np.argmin([abs(start - Fraction(float(timestamp))) for start in starts]))


def test_every_backend_rule_returns_each_rows_own_frame(recorded):
    """Each row's stored timestamp, looked up the way the video backends of Isaac-GR00T and LeRobot do on frames
    decoded with PyAV, finds the frame written with that row, as the project's own reader (imageio-ffmpeg) does."""
    root, originals = recorded
    for episode, written in enumerate(originals):
        table = parquet(root, episode)
        rows, stamps = table.column("frame_index").to_numpy(), table.column("timestamp").to_numpy()
        for camera in CAMERAS:
            frames, starts = decode_with_pyav(video_segment(root, episode, camera)[0])
            assert starts == [Fraction(i, 30) for i in range(len(rows))]  # frame i starts at frame_index / fps
            assert [frame_played_at(starts, t) for t in stamps] == rows.tolist()
            assert [nearest_frame(starts, t) for t in stamps] == rows.tolist()
            # The rule tells: with timestamps rounded to the nearest float32, a third and more of the rows get the frame before.
            rounded = (rows / 30).astype(np.float32)
            assert sum(frame_played_at(starts, t) != row for t, row in zip(rounded, rows)) > len(rows) / 3
            # The same pictures as our reader's, within PyAV's coarser default colour conversion, and frame i of
            # PyAV is the frame written with row i (nearer it than the frames written a few rows away).
            assert np.abs(frames - read_video_frames(root, episode, camera).astype(float)).mean() < 5
            original = written[camera].astype(float)
            own = np.abs(frames - original).mean()
            assert all(own < np.abs(frames[offset:] - original[:-offset]).mean() for offset in (5, 10))


def test_statistics_describe_the_values_as_stored(tmp_path):
    """float32 in the parquet files, so in stats.json: a gripper held still in float64 terms (values 1e-12 apart)
    is one float32, so min == max and Isaac's min-max normalization maps it to 0 (it gave -4.4 with float64 statistics)."""
    rng = np.random.default_rng(0)
    writer = DatasetWriter(tmp_path / "demos", "degrees", 0.02, {}, cameras=CAMERAS)
    for length in (5, 7):
        states = rng.uniform(-0.5, 0.5, (length, 25))
        states[:, 5] = 0.3 + rng.uniform(0, 1e-12, length)
        actions = rng.uniform(-1, 1, (length, 6))
        actions[:, 5] = 0.0
        writer.add_episode(states, actions, rng.uniform(-1, 0, length), True,
                           images={camera: np.zeros((length, 16, 16, 3), np.uint8) for camera in CAMERAS})
    assert writer.close()
    root, stats = tmp_path / "demos", meta(tmp_path / "demos", "stats.json")
    for feature in ("observation.state", "observation.environment_state", "action", "next.reward"):
        columns = [np.array(parquet(root, i).column(feature).to_pylist(), dtype=np.float64) for i in range(2)]
        stored = np.concatenate(columns).reshape(-1, len(stats[feature]["min"]))
        for name, values in [("min", stored.min(0)), ("max", stored.max(0)), ("mean", stored.mean(0)),
                             ("q01", np.quantile(stored, 0.01, axis=0))]:
            np.testing.assert_array_equal(stats[feature][name], values, err_msg=f"{feature} {name}")
    assert stats["action"]["min"][5] == stats["action"]["max"][5] and stats["action"]["std"][5] == 0.0


def test_modality_json_maps_gr00t_keys_onto_the_dataset(recorded):
    root, _ = recorded
    modality, info = meta(root, "modality.json"), meta(root, "info.json")
    assert set(modality) == {"state", "action", "video", "annotation"}
    for group, feature in [("state", "observation.state"), ("action", "action")]:
        names = info["features"][feature]["names"]
        slices = modality[group]
        assert {name: (s["start"], s["end"]) for name, s in slices.items()} == {"single_arm": (0, 5), "gripper": (5, 6)}
        assert all(s["original_key"] == feature for s in slices.values())
        covered = [names[i] for s in slices.values() for i in range(s["start"], s["end"])]
        assert covered == names  # every joint once, in order
        assert names[slice(*(slices["gripper"][k] for k in ("start", "end")))] == ["gripper.pos"]
    assert modality["video"] == {"front": {"original_key": "observation.images.top_view"},
                                 "wrist": {"original_key": "observation.images.wrist"}}
    for kind, keys in SO100_DUALCAM_KEYS.items():  # Isaac refuses a dataset that lacks one ("Video key front not found")
        assert list(modality[kind]) == keys
    assert all(info["features"][v["original_key"]]["dtype"] == "video" for v in modality["video"].values())
    annotation = modality["annotation"]["human.task_description"]["original_key"]
    task_indices = set(parquet(root, 0).column(annotation).to_pylist())
    tasks = {t["task_index"]: t["task"] for t in meta(root, "tasks.jsonl")}
    assert task_indices <= set(tasks) and all(tasks.values())


def test_stats_agree_with_the_data(recorded):
    root, originals = recorded
    episodes_stats = meta(root, "episodes_stats.jsonl")
    lengths = [e["length"] for e in meta(root, "episodes.jsonl")]
    assert [line["episode_index"] for line in episodes_stats] == [0, 1]
    info = meta(root, "info.json")
    for episode, line in enumerate(episodes_stats):
        stats = line["stats"]
        assert set(stats) == set(info["features"])
        for key, camera in zip(KEYS, CAMERAS):
            image = {name: np.array(value) for name, value in stats[key].items()}
            assert image["count"].tolist() == [lengths[episode]]
            for name in ("min", "max", "mean", "std"):
                assert image[name].shape == (3, 1, 1) and (image[name] >= 0).all() and (image[name] <= 1).all()
            assert (image["min"] <= image["mean"]).all() and (image["mean"] <= image["max"]).all()
            frames = originals[episode][camera] / 255.0
            np.testing.assert_allclose(image["mean"].ravel(), frames.mean(axis=(0, 1, 2)), atol=1e-9)
            np.testing.assert_allclose(image["std"].ravel(), frames.std(axis=(0, 1, 2)), atol=1e-9)
            np.testing.assert_allclose(image["max"].ravel(), frames.max(axis=(0, 1, 2)))
        table = parquet(root, episode)
        state = np.array(table.column("observation.state").to_pylist())
        assert stats["observation.state"]["count"] == [lengths[episode]] == [len(state)]
        np.testing.assert_allclose(stats["observation.state"]["mean"], state.mean(0), rtol=1e-6)
        np.testing.assert_allclose(stats["observation.state"]["min"], state.min(0))
        assert stats["frame_index"]["max"] == [lengths[episode] - 1] and stats["next.reward"]["count"] == [lengths[episode]]

    # stats.json in the form Isaac-GR00T validates (q01, q99) and slices per modality key (no count).
    stats = meta(root, "stats.json")
    state = np.concatenate([np.array(parquet(root, i).column("observation.state").to_pylist()) for i in range(2)])
    for feature in ("observation.state", "action"):
        assert set(stats[feature]) == {"mean", "std", "min", "max", "q01", "q99"}
        assert all(len(values) == 6 for values in stats[feature].values())
    np.testing.assert_allclose(stats["observation.state"]["max"], state.max(0))
    np.testing.assert_allclose(stats["observation.state"]["q99"], np.quantile(state, 0.99, axis=0), rtol=1e-5)


def test_the_reader_selects_frames_cameras_and_episodes(recorded):
    root, _ = recorded
    demos = read_dataset(root)
    assert demos.cameras == KEYS and demos.episode_indices == [0, 1]
    everything = read_video_frames(root, 1, "observation.images.wrist")
    assert len(everything) == len(demos.episodes[1]["state"])
    np.testing.assert_array_equal(read_video_frames(root, 1, "wrist", [0, 5, -1]), everything[[0, 5, -1]])
    np.testing.assert_array_equal(read_video_frames(root, 1, "wrist", slice(10, 20)), everything[10:20])
    with pytest.raises(KeyError, match="no camera 'front'.*observation.images.top_view"):
        read_video_frames(root, 0, "front")
    with pytest.raises(FileNotFoundError, match="episode_000007.mp4"):
        read_video_frames(root, 7, "wrist")


def as_lerobot_recording(source, root, units):
    """A copy of our dataset `source` as LeRobot's recorder writes the so101_mujoco robot with --robot.task_state=true:
    the task state after the joints in observation.state, no observation.environment_state, the joints in `units`,
    and nothing that names the units or GR00T's keys (no so101_sim block, no modality.json)."""
    shutil.copytree(source, root)
    (root / "meta/modality.json").unlink()
    source_units = meta(source, "info.json")["so101_sim"]["joint_units"]

    def column(values):
        return pa.array(np.asarray(values, np.float32).tolist(), pa.list_(pa.float32(), values.shape[1]))

    for path in sorted(root.glob("data/**/*.parquet")):
        table = pq.read_table(path)
        joints, task, action = (np.array(table.column(name).to_pylist()) for name in ("observation.state", "observation.environment_state", "action"))
        joints, action = (radians_to_units(units_to_radians(values, source_units), units) for values in (joints, action))
        table = table.drop_columns(["observation.environment_state"])
        table = table.set_column(table.column_names.index("observation.state"), "observation.state", column(np.hstack([joints, task])))
        pq.write_table(table.set_column(table.column_names.index("action"), "action", column(action)), path)

    def recorder_features(info):
        del info["so101_sim"], info["features"]["observation.environment_state"]
        info["features"]["observation.state"] |= {"shape": [25], "names": lerobot_dataset.RECORDED_STATE_NAMES}

    edit_json(root / "meta/info.json", recorder_features)
    return root


@pytest.mark.parametrize("units", ["degrees", "range"])
def test_a_lerobot_recording_of_the_simulated_arm_reads_as_our_own_dataset(recorded, tmp_path, units):
    """BC reads the joints and the task state that follows them, in units the gripper tips show; GR00T the joints."""
    root = as_lerobot_recording(recorded[0], tmp_path / "recording", units)
    ours, theirs = read_dataset(recorded[0]), read_dataset(root)
    assert theirs.units == units and theirs.state_names == ours.state_names == lerobot_dataset.RECORDED_STATE_NAMES
    for a, b in zip(ours.episodes, theirs.episodes, strict=True):
        np.testing.assert_allclose(b["state"], a["state"], atol=1e-5)  # float32 degrees or range, back in radians
        np.testing.assert_allclose(b["target"], a["target"], atol=1e-5)

    info = meta(root, "info.json")
    assert lerobot_dataset.gr00t_modality(info["features"]) == meta(recorded[0], "modality.json")  # joints 0:5 and 5:6
    groot = finetune_groot.load_dataset(root, None)
    assert groot.units == units and [s.shape[1] for s in groot.states] == [6, 6]
    for states, episode in zip(groot.states, theirs.episodes, strict=True):
        np.testing.assert_allclose(units_to_radians(states, units), episode["state"][:, :6], atol=1e-6)


def test_an_observation_state_with_more_than_the_joints_must_be_named_as_the_recorder_names_them(recorded, tmp_path):
    names = lerobot_dataset.RECORDED_STATE_NAMES
    swapped = [*names[:6], names[7], names[6], *names[8:]]
    state = {"dtype": "float32", "shape": [25]}
    refusals = {
        "and no list of their names": {**state, "names": None},
        "and 24 names": {**state, "names": names[:-1]},
        "whose name 6 is 'shoulder_lift.vel' where 'shoulder_pan.vel' belongs": {**state, "names": swapped},
        "whose name 20 is 'temperature' where 'tip.y' belongs": {**state, "names": [*names[:20], "temperature", *names[21:]]},
    }
    for message, feature in refusals.items():
        for read in (lerobot_dataset.check_observation_state, lerobot_dataset.gr00t_modality):
            with pytest.raises(ValueError, match=f"observation.state holds 25 values {message}; it must hold the 6 SO-101 joints"):
                read({"observation.state": feature, "action": {"shape": [6]}, KEYS[0]: {"dtype": "video"}})
    with pytest.raises(ValueError, match="observation.environment_state too"):
        lerobot_dataset.check_observation_state({"observation.state": {**state, "names": names}, "observation.environment_state": {}})

    root = as_lerobot_recording(recorded[0], tmp_path / "recording", "degrees")
    edit_json(root / "meta/info.json", lambda info: info["features"]["observation.state"].update(names=swapped))
    with pytest.raises(ValueError, match="whose name 6 is") as raised:
        read_dataset(root)
    assert "\n" not in str(raised.value)
    with pytest.raises(ValueError, match="whose name 6 is"):
        finetune_groot.load_dataset(root, None)


def test_state_only_recording_keeps_the_v2_0_layout(tmp_path):
    root = tmp_path / "state_only"
    record(root, cameras=False, n_episodes=1, max_attempts=1)
    assert not (root / "videos").exists()
    assert sorted(p.name for p in (root / "meta").iterdir()) == ["episodes.jsonl", "info.json", "stats.json", "tasks.jsonl"]
    info = meta(root, "info.json")
    assert info["codebase_version"] == "v2.0" and info["total_videos"] == 0 and info["video_path"] is None
    assert all(f["dtype"] != "video" for f in info["features"].values())
    assert "count" in meta(root, "stats.json")["observation.state"]
    assert read_dataset(root).cameras == []


def test_an_interrupt_while_encoding_keeps_only_whole_episodes(tmp_path, monkeypatch, capsys):
    """Ctrl-C in the middle of episode 1's videos: episode 0 is kept, nothing of episode 1 is."""
    root = tmp_path / "new"
    encode, calls = lerobot_dataset.encode_video, []

    def interrupted(path, frames, *args, **kwargs):
        calls.append(path)
        if len(calls) == 4:  # episode 1's second camera, after its first video was written
            encode(path, frames[:10], *args, **kwargs)
            raise KeyboardInterrupt
        return encode(path, frames, *args, **kwargs)

    monkeypatch.setattr(lerobot_dataset, "encode_video", interrupted)
    with pytest.raises(SystemExit) as exit_:
        record(root)
    assert exit_.value.code == 130
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "meta" not in p.parts)
    assert files == ["data/chunk-000/episode_000000.parquet",
                     *[f"videos/chunk-000/{key}/episode_000000.mp4" for key in KEYS]]
    assert meta(root, "info.json")["total_videos"] == 2 and len(meta(root, "episodes_stats.jsonl")) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new"]
    assert "interrupted: wrote the 1 episodes" in capsys.readouterr().out


def test_progress_lines_report_the_rate(tmp_path, capsys):
    record(tmp_path / "one", n_episodes=1, max_attempts=1)
    out = capsys.readouterr().out
    assert "attempt 1: kept (111 frames); 1/1 episodes, 111 frames in" in out
    assert "frames/s" in out and "episodes/min" in out and "(111 frames, 2 videos)" in out


@pytest.mark.parametrize("size, message", [(63, "--image-size must be even"), (8, r"--image-size must be within \[16, 480\]"),
                                           (482, r"--image-size must be within \[16, 480\], got 482")])
def test_the_image_size_is_checked(tmp_path, size, message):
    args = tyro.cli(record_demos.Args, args=["--output-dir", str(tmp_path / "out"), "--cameras", "--image-size", str(size)])
    with pytest.raises(SystemExit, match=message):
        record_demos.main(args)
    assert not (tmp_path / "out").exists()


def test_the_image_size_limit_is_the_scenes_offscreen_framebuffer():
    model = SO101PaperSquareEnv().model
    assert record_demos.MAX_IMAGE_SIZE == min(model.vis.global_.offwidth, model.vis.global_.offheight)


def test_the_writer_refuses_frames_that_do_not_fit(tmp_path):
    states, actions, rewards = np.zeros((3, 25)), np.zeros((3, 6)), np.zeros(3)
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    plain = DatasetWriter(tmp_path / "plain", "radians", 0.02, {})
    with pytest.raises(ValueError, match="records no cameras"):
        plain.add_episode(states, actions, rewards, True, images={"wrist": frames})
    plain.discard()
    with pytest.raises(ValueError, match="distinct names, also as named in modality.json"):
        DatasetWriter(tmp_path / "cams", "radians", 0.02, {}, cameras=("top_view", "front"))  # both video.front
    writer = DatasetWriter(tmp_path / "cams", "radians", 0.02, {}, cameras=CAMERAS)
    for images, message in [
        (None, "needs images from the cameras"),
        ({"top_view": frames}, "needs images from the cameras"),
        ({"top_view": frames, "wrist": frames[:2]}, "wrist.*T=3"),
        ({"top_view": frames, "wrist": frames.astype(np.float32)}, "must be uint8"),
        ({"top_view": frames[:, :15], "wrist": frames[:, :15]}, "even H and W"),
    ]:
        with pytest.raises(ValueError, match=message):
            writer.add_episode(states, actions, rewards, True, images=images)
    writer.discard()
    assert list(tmp_path.iterdir()) == []


# LeRobot v3.0 (DatasetWriter(version="v3.0"), record_demos.py --dataset-version v3.0): the same episodes,
# merged into LeRobot's files; tests/test_interop.py loads it with LeRobot itself.

LEROBOT_INFO_FIELDS = {"codebase_version", "fps", "features", "total_episodes", "total_frames", "total_tasks", "chunks_size",
                       "data_files_size_in_mb", "video_files_size_in_mb", "data_path", "video_path", "robot_type", "splits"}
"""the fields of LeRobot 0.6's DatasetInfo: it warns on any other key of info.json, and drops it when it rewrites the file"""


def write_both(tmp_path, lengths=(5, 8, 6)):
    """The same episodes (pictures that change every frame) written as v2.1 and as v3.0."""
    rng = np.random.default_rng(0)
    episodes = []
    for episode, length in enumerate(lengths):
        ramp = np.linspace(0, 80, 16)[None, None, :, None] + np.arange(length)[:, None, None, None] * 9 + episode * 5
        episodes.append((rng.uniform(-0.5, 0.5, (length, 25)), rng.uniform(-1, 1, (length, 6)), rng.uniform(-1, 0, length),
                         {camera: np.broadcast_to(ramp + 40 * n, (length, 16, 16, 3)).astype(np.uint8)
                          for n, camera in enumerate(CAMERAS)}))
    roots = {}
    for version in ("v2.1", "v3.0"):
        writer = DatasetWriter(tmp_path / version, "degrees", 0.02, {"demonstrator": "test"}, cameras=CAMERAS, version=version)
        for states, actions, rewards, images in episodes:
            writer.add_episode(states, actions, rewards, True, images=images)
        assert writer.close()
        roots[version] = tmp_path / version
    return roots, [len(states) for states, *_ in episodes]


def test_v3_0_holds_the_v2_1_episodes_in_lerobots_merged_files(tmp_path):
    roots, lengths = write_both(tmp_path)
    root = roots["v3.0"]
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == sorted(["data/chunk-000/file-000.parquet", "meta/episodes/chunk-000/file-000.parquet", "meta/info.json",
                            "meta/modality.json", "meta/so101_sim.json", "meta/stats.json", "meta/tasks.parquet",
                            *[f"videos/{key}/chunk-000/file-000.mp4" for key in KEYS]])
    info = meta(root, "info.json")
    assert set(info) == LEROBOT_INFO_FIELDS and info["codebase_version"] == "v3.0"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, sum(lengths), 1)
    assert info["features"] == meta(roots["v2.1"], "info.json")["features"]
    assert meta(root, "so101_sim.json") == {"joint_units": "degrees", "act_scale": 0.02, "demonstrator": "test"}
    assert meta(root, "modality.json") == meta(roots["v2.1"], "modality.json") == lerobot_dataset.gr00t_modality(info["features"])

    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    starts = np.cumsum([0, *lengths])
    for index, row in enumerate(episodes):
        assert (row["episode_index"], row["length"], row["tasks"]) == (index, lengths[index], [lerobot_dataset.TASK])
        assert (row["dataset_from_index"], row["dataset_to_index"]) == (starts[index], starts[index + 1])
        for key in KEYS:
            assert row[f"videos/{key}/from_timestamp"] == starts[index] / 30 and row[f"videos/{key}/to_timestamp"] == starts[index + 1] / 30
        assert row["stats/observation.state/count"] == [lengths[index]]
    assert pq.read_table(root / "meta/tasks.parquet").to_pylist() == [{"task_index": 0, "task": lerobot_dataset.TASK}]
    assert lerobot_dataset.read_tasks(root, info) == {0: lerobot_dataset.TASK}

    # the same values and pictures as the v2.1 dataset, and LeRobot's statistics of them (images too)
    old, new = read_dataset(roots["v2.1"]), read_dataset(root)
    assert new.units == "degrees" and new.cameras == KEYS and new.episode_indices == [0, 1, 2]
    for a, b in zip(old.episodes, new.episodes, strict=True):
        np.testing.assert_array_equal(a["state"], b["state"])
        np.testing.assert_array_equal(a["target"], b["target"])
    for episode in range(3):
        for camera in CAMERAS:
            np.testing.assert_array_equal(read_video_frames(root, episode, camera), read_video_frames(roots["v2.1"], episode, camera))
    stats = meta(root, "stats.json")
    stored = lerobot_dataset.read_frames(root, ["action"])["action"].astype(np.float32).astype(np.float64)
    assert set(stats["action"]) == {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
    np.testing.assert_array_equal(stats["action"]["q50"], np.quantile(stored, 0.5, axis=0))
    assert set(stats) == set(info["features"]) and np.array(stats[KEYS[0]]["q99"]).shape == (3, 1, 1)


def test_v3_0_starts_a_new_file_at_lerobots_size_limits(tmp_path, monkeypatch):
    """With limits below one episode each episode gets its own data and video files, and each video's times start at 0."""
    monkeypatch.setattr(lerobot_dataset, "V3_DATA_FILE_MB", 1e-6)
    monkeypatch.setattr(lerobot_dataset, "V3_VIDEO_FILE_MB", 1e-6)
    roots, lengths = write_both(tmp_path)
    root = roots["v3.0"]
    assert sorted(p.name for p in (root / "data/chunk-000").iterdir()) == ["file-000.parquet", "file-001.parquet", "file-002.parquet"]
    assert video_segment(root, 2, "wrist") == (root / "videos/observation.images.wrist/chunk-000/file-002.mp4", 0.0, lengths[2])
    for episode in range(3):
        np.testing.assert_array_equal(read_video_frames(root, episode, "top_view"), read_video_frames(roots["v2.1"], episode, "top_view"))
    assert lerobot_dataset._file_groups([60, 50, 10, 95], 100 / 1024**2) == [([0], 0, 0), ([1, 2], 0, 1), ([3], 0, 2)]


def test_record_demos_writes_v3_0(tmp_path):
    root = tmp_path / "v3"
    record(root, cameras=False, n_episodes=1, max_attempts=1, dataset_version="v3.0")
    info = meta(root, "info.json")
    assert info["codebase_version"] == "v3.0" and info["video_path"] is None and not (root / "videos").exists()
    assert not (root / "meta/modality.json").exists() and not (root / "pending").exists()
    demos = read_dataset(root)
    assert demos.units == "degrees" and len(demos.episodes) == 1 and demos.cameras == []


def set_cell(path, column, row, value):
    table = pq.read_table(path)
    values = table.column(column).to_pylist()
    values[row] = value
    pq.write_table(table.set_column(table.column_names.index(column), column, pa.array(values, table.schema.field(column).type)), path)


EPISODES_FILE = "meta/episodes/chunk-000/file-000.parquet"
WRIST = "videos/observation.images.wrist"
DAMAGED_V3 = {
    "a NaN time": (lambda root: set_cell(root / EPISODES_FILE, f"{WRIST}/from_timestamp", 1, float("nan")),
                   "from_timestamp' holds NaN or infinite values, first in episode 1;"),
    "a span of no whole frames": (lambda root: set_cell(root / EPISODES_FILE, f"{WRIST}/to_timestamp", 1, 0.21),
                                  "episode 1's observation.images.wrist entry .* is not a file and a whole number of frames in it"),
    "a negative file": (lambda root: set_cell(root / EPISODES_FILE, f"{WRIST}/file_index", 1, -3), "chunk 0, file -3"),
    "no episodes file": (lambda root: (root / EPISODES_FILE).unlink(), "has no episode 1 in meta/episodes/"),
    "an odd path template": (lambda root: edit_info(root, video_path="videos/{camera}/file.mp4"), "path template .* cannot be filled in"),
}


def edit_info(root, **changes):
    info = meta(root, "info.json")
    (root / "meta/info.json").write_text(json.dumps({**info, **changes}))


@pytest.mark.parametrize("damage, message", DAMAGED_V3.values(), ids=DAMAGED_V3.keys())
def test_a_damaged_v3_0_dataset_is_refused_in_one_line(tmp_path, damage, message):
    roots, _ = write_both(tmp_path)
    damage(roots["v3.0"])
    with pytest.raises((ValueError, FileNotFoundError), match=message) as raised:
        read_video_frames(roots["v3.0"], 1, "wrist")
    assert "\n" not in str(raised.value)
    (roots["v3.0"] / "meta/tasks.parquet").write_text("x")
    with pytest.raises(ValueError, match="cannot read .*tasks.parquet"):
        lerobot_dataset.read_tasks(roots["v3.0"], meta(roots["v3.0"], "info.json"))

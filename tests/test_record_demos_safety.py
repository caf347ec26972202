"""record_demos.py writes only into a new or empty directory, or replaces one of our datasets with
--overwrite once the new one is complete; it deletes nothing it did not write, and checks its
numeric options where they are parsed."""

import json
import pathlib
import signal
import subprocess
import sys

import pytest
import tyro

import record_demos
from file_faults import pretend_mount_point
from lerobot_dataset import read_dataset
from so101_env import SO101PaperSquareEnv


def record(path, **overrides):
    # Seeds 2 and 3 are short Jacobian successes (about 120 steps each); the zero base never succeeds.
    args = dict(output_dir=str(path), n_episodes=1, seed=2, max_attempts=2, dart_noise_std=0.0)
    return record_demos.main(record_demos.Args(**{**args, **overrides}))


def snapshot(root: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def siblings(path: pathlib.Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


@pytest.fixture(scope="module")
def old_dataset(tmp_path_factory):
    """A two-episode dataset to copy as the one --overwrite should replace (or keep)."""
    path = tmp_path_factory.mktemp("old") / "demos"
    record(path, n_episodes=2, max_attempts=2, units="radians")
    return snapshot(path)


def lay_out(root: pathlib.Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)


FOREIGN = {
    "a directory of someone else's files": {"notes.txt": b"mine", "data/chunk-000/episode_000000.parquet": b"not ours"},
    "stray parquet files, no meta/info.json": {"data/chunk-000/episode_000000.parquet": b"x", "data/x/y.parquet": b"y"},
    "a meta/info.json that is no LeRobot info": {"meta/info.json": b"{}", "data/chunk-000/episode_000003.parquet": b"z"},
    "a meta/info.json that is not JSON": {"meta/info.json": b"\x00garbage", "data/chunk-000/a.parquet": b"a"},
}


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("contents", FOREIGN.values(), ids=FOREIGN.keys())
def test_a_non_empty_directory_that_is_no_dataset_is_refused_and_left_intact(tmp_path, contents, overwrite):
    out = tmp_path / "out"
    lay_out(out, contents)
    with pytest.raises(SystemExit, match="not empty and holds no LeRobot dataset.*choose a new or empty directory"):
        record(out, overwrite=overwrite)
    assert snapshot(out) == contents
    assert siblings(out) == ["out"]


def test_a_file_in_place_of_the_directory_is_refused(tmp_path):
    out = tmp_path / "out"
    out.write_text("a file")
    with pytest.raises(SystemExit, match="exists and is not a directory"):
        record(out, overwrite=True)
    assert out.read_text() == "a file" and siblings(out) == ["out"]


def test_an_existing_dataset_is_replaced_only_with_overwrite_and_whole(tmp_path, old_dataset):
    out = tmp_path / "demos"
    # An old LeRobot v2.1 dataset holds a meta file this writer does not write: left behind, it
    # would describe episodes that no longer exist.
    old = {**old_dataset, "meta/episodes_stats.jsonl": b'{"episode_index": 1}\n'}
    lay_out(out, old)
    with pytest.raises(SystemExit, match="already holds a dataset; pass --overwrite to replace it or choose another"):
        record(out)
    assert snapshot(out) == old

    writer = record(out, overwrite=True, units="degrees")
    assert writer.root == out and writer.replaces_dataset
    fresh = tmp_path / "fresh"
    record(fresh, units="degrees")
    assert sorted(snapshot(out)) == sorted(snapshot(fresh))  # exactly the new dataset's files
    demos = read_dataset(out)
    assert demos.units == "degrees" and len(demos.episodes) == 1
    assert json.loads((out / "meta" / "info.json").read_text())["total_episodes"] == 1
    assert siblings(out) == ["demos", "fresh"]  # no temporary or moved-aside directory is left


def test_overwrite_that_keeps_no_episode_leaves_the_old_dataset_byte_identical(tmp_path, old_dataset):
    out = tmp_path / "demos"
    lay_out(out, old_dataset)
    with pytest.raises(SystemExit, match="kept 0 episodes in 1 attempts.*the dataset already there is left as it was") as exit_:
        record(out, overwrite=True, base_policy="zero", max_attempts=1)
    assert exit_.value.code not in (0, None)
    assert snapshot(out) == old_dataset
    assert siblings(out) == ["demos"]


@pytest.mark.parametrize("error", [RuntimeError("the sim broke"), KeyboardInterrupt()], ids=["raises", "interrupted"])
def test_overwrite_that_fails_midway_leaves_the_old_dataset(tmp_path, old_dataset, monkeypatch, capsys, error):
    out = tmp_path / "demos"
    lay_out(out, old_dataset)
    step = SO101PaperSquareEnv.step
    calls = []

    def failing_step(self, action):
        calls.append(1)
        if len(calls) == 150:  # in the second episode: the first (about 111 steps) was kept
            raise error
        return step(self, action)

    monkeypatch.setattr(SO101PaperSquareEnv, "step", failing_step)
    if isinstance(error, RuntimeError):
        with pytest.raises(RuntimeError, match="the sim broke"):
            record(out, overwrite=True, n_episodes=2)
    else:
        with pytest.raises(SystemExit) as exit_:
            record(out, overwrite=True, n_episodes=2)
        assert exit_.value.code == 130 and "interrupted: nothing written to" in capsys.readouterr().out
    assert len(calls) == 150
    assert snapshot(out) == old_dataset
    assert siblings(out) == ["demos"]


def test_interrupting_a_new_recording_keeps_its_episodes_and_exits_non_zero(tmp_path, monkeypatch):
    out = tmp_path / "new"
    step = SO101PaperSquareEnv.step
    calls = []

    def interrupted_step(self, action):
        calls.append(1)
        if len(calls) == 150:
            raise KeyboardInterrupt
        return step(self, action)

    monkeypatch.setattr(SO101PaperSquareEnv, "step", interrupted_step)
    with pytest.raises(SystemExit) as exit_:
        record(out, n_episodes=2)
    assert exit_.value.code == 130
    assert len(read_dataset(out).episodes) == 1
    assert siblings(out) == ["new"]


def test_sigterm_keeps_the_episodes_recorded_so_far_as_ctrl_c_does_and_exits_143(tmp_path):
    out = tmp_path / "new"
    command = [sys.executable, "record_demos.py", "--output-dir", str(out), "--n-episodes", "5", "--seed", "2",
               "--dart-noise-std", "0", "--cameras", "--image-size", "32"]  # with cameras, a line per attempt
    process = subprocess.Popen(command, cwd=pathlib.Path(record_demos.__file__).parent, stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("attempt 1: kept"):
            break
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, output
    assert "interrupted: wrote the" in output and len(read_dataset(out).episodes) >= 1
    assert siblings(out) == ["new"]  # no staging directory left behind


def test_a_mount_point_is_refused_before_recording(tmp_path, monkeypatch):
    out = tmp_path / "usb"
    out.mkdir()
    pretend_mount_point(monkeypatch, out)
    with pytest.raises(SystemExit, match="usb is a mount point .*write into a new directory inside it") as exit_:
        record(out)
    assert exit_.value.code == 2 and list(out.iterdir()) == [] and siblings(out) == ["usb"]


def test_a_recording_that_keeps_no_episode_creates_nothing(tmp_path):
    out = tmp_path / "runs" / "demos" / "zero"
    with pytest.raises(SystemExit, match="kept 0 episodes.*--keep-failures.*nothing written"):
        record(out, base_policy="zero", max_attempts=1)
    assert list(tmp_path.iterdir()) == []  # not even the parent directories


def test_an_empty_directory_stays_empty_until_an_episode_is_kept_then_is_filled_in_place(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    inode = out.stat().st_ino
    with pytest.raises(SystemExit, match="kept 0 episodes"):
        record(out, base_policy="zero", max_attempts=1)
    assert list(out.iterdir()) == [] and siblings(out) == ["empty"]
    record(out)
    assert out.stat().st_ino == inode  # the user's directory itself, filled
    assert len(read_dataset(out).episodes) == 1
    assert siblings(out) == ["empty"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--n-episodes", "0"], "--n-episodes must be at least 1, got 0"),
        (["--n-episodes", "-3"], "--n-episodes must be at least 1, got -3"),
        (["--max-attempts", "0"], "--max-attempts must be at least 1, got 0"),
        (["--seed", "-1"], r"--seed must be within \[0, 4294967295\], got -1"),
        (["--dart-noise-std", "-0.1"], r"--dart-noise-std must be within \[0.0, 1.0\], got -0.1"),
        (["--dart-noise-std", "nan"], r"--dart-noise-std must be a finite number, got nan"),
        (["--dart-noise-std", "inf"], r"--dart-noise-std must be a finite number, got inf"),
        (["--act-scale", "0"], r"--act-scale must be within \(0.0, 0.2\], got 0.0"),
        (["--act-scale", "-0.02"], r"--act-scale must be within \(0.0, 0.2\], got -0.02"),
        (["--act-scale", "0.5"], r"--act-scale must be within \(0.0, 0.2\], got 0.5"),  # the env's limit, up front
        (["--act-scale", "inf"], r"--act-scale must be a finite number, got inf"),
        (["--act-scale", "nan"], r"--act-scale must be a finite number, got nan"),
        (["--tape-half-size", "0.01"], r"--tape-half-size must be within \[0.02, 0.3\], got 0.01"),
        (["--tape-half-size", "0.5"], r"--tape-half-size must be within \[0.02, 0.3\], got 0.5"),
        (["--tape-half-size", "nan"], r"--tape-half-size must be a finite number, got nan"),
        # every problem at once, not only the first
        (["--dart-noise-std", "-1", "--act-scale", "-1"], r"--dart-noise-std must be.*\n.*--act-scale must be"),
    ],
)
def test_numeric_options_are_checked_where_they_are_parsed(tmp_path, argv, message):
    out = tmp_path / "out"
    quick = ["--base-policy", "zero", "--n-episodes", "1", "--max-attempts", "1"]  # the later flag wins
    args = tyro.cli(record_demos.Args, args=["--output-dir", str(out), *quick, *argv])
    with pytest.raises(SystemExit, match=message):
        record_demos.main(args)
    assert not out.exists()


def test_the_tape_range_is_the_envs():
    low, high = record_demos.TAPE_HALF_SIZE_RANGE
    for accepted in (low, high):
        SO101PaperSquareEnv(tape_half_size=accepted).close()
    for refused in (low - 1e-6, high + 1e-6):
        with pytest.raises(ValueError, match="tape_half_size"):
            SO101PaperSquareEnv(tape_half_size=refused)

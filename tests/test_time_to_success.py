"""benchmark.py's time-to-95 % reading of a training run's TensorBoard log."""

import pytest
from torch.utils.tensorboard import SummaryWriter

import benchmark


def write_run(path, evaluations):
    writer = SummaryWriter(str(path))
    for step, minutes, success in evaluations:
        writer.add_scalar("eval/success_rate", success, step)
        writer.add_scalar("eval/training_minutes", minutes, step)
    writer.close()


def test_first_success_is_the_first_evaluation_at_or_above_the_target():
    points = [(20_480, 1.0, 0.90), (40_960, 2.0, 0.95), (61_440, 3.0, 0.99)]
    assert benchmark.first_success(points, 0.95) == (40_960, 2.0)
    assert benchmark.first_success(points, 0.99) == (61_440, 3.0)
    assert benchmark.first_success(points, 1.0) is None


def test_settled_success_is_the_evaluation_after_which_none_falls_below_the_target():
    points = [(20_480, 1.0, 0.95), (40_960, 2.0, 0.90), (61_440, 3.0, 0.96), (81_920, 4.0, 0.95), (102_400, 5.0, 1.0)]
    assert benchmark.settled_success(points, 0.95) == (61_440, 3.0)
    assert benchmark.settled_success(points, 0.99) == (102_400, 5.0)
    assert benchmark.settled_success(points[:2], 0.95) is None


def test_our_time_to_success_reads_steps_and_minutes_from_the_log(tmp_path):
    write_run(tmp_path, [(20_480, 1.25, 0.80), (40_960, 2.5, 0.97), (61_440, 3.75, 0.93), (81_920, 5.0, 1.0)])
    assert benchmark.our_time_to_success(str(tmp_path), 0.95) == ((40_960, pytest.approx(2.5)), 4)
    assert benchmark.our_time_to_success(str(tmp_path), 0.99) == ((81_920, pytest.approx(5.0)), 4)


def test_an_evaluation_of_exactly_the_target_counts_although_tensorboard_stores_float32(tmp_path):
    write_run(tmp_path, [(20_480, 1.0, 0.94), (40_960, 2.0, 95 / 100), (61_440, 3.0, 0.99)])
    assert benchmark.our_time_to_success(str(tmp_path), 0.95) == ((40_960, pytest.approx(2.0)), 3)


def test_a_run_without_training_minutes_is_refused_with_a_reason(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    writer.add_scalar("eval/success_rate", 1.0, 2048)
    writer.close()
    with pytest.raises(SystemExit, match="eval/training_minutes"):
        benchmark.our_time_to_success(str(tmp_path), 0.95)

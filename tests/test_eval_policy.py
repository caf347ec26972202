"""eval_policy.py: statistics and the JSON it writes."""

import json

import pytest
import tyro

import eval_policy


def test_wilson_interval_known_values():
    low, high = eval_policy.wilson_interval(83, 100)
    assert low == pytest.approx(0.7445, abs=1e-3) and high == pytest.approx(0.8912, abs=1e-3)
    assert eval_policy.wilson_interval(0, 10)[0] == 0.0
    assert eval_policy.wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_eval_writes_json(tmp_path):
    out = tmp_path / "eval.json"
    args = eval_policy.Args(base_policy="zero", n_episodes=2, seed=3, output_json=str(out))
    eval_policy.main(args)
    result = json.loads(out.read_text())
    assert result["seed"] == 3 and result["success_rate"] == 0.0
    assert [e["seed"] for e in result["episodes"]] == [3, 4]
    assert result["mean_episode_length"] == 400
    assert result["mean_final_distance"] == pytest.approx(sum(e["final_distance"] for e in result["episodes"]) / 2)


def test_eval_rejects_unknown_base():
    with pytest.raises(SystemExit) as exit_:
        tyro.cli(eval_policy.Args, args=["--base-policy", "nope", "--n-episodes", "1"])
    assert exit_.value.code == 2

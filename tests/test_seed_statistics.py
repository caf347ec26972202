"""seed_statistics.py: IQM and its bootstrap interval, and the paired difference from a base, on
inputs worked out by hand; eval_policy.py over several checkpoints (--model-paths, --aggregate-json)
and its wider randomization."""

import json
import pathlib

import numpy as np
import pytest
import torch

import eval_policy
import ppo_residual_jacobian as ppo
import so101_env
from actor_program import export_actor
from checkpoint_io import save_checkpoint
from seed_statistics import aggregate, bootstrap_ci, iqm, iqm_weights, paired_difference


def test_iqm_of_four_is_the_mean_of_the_middle_two():
    assert iqm([1, 2, 3, 4]) == pytest.approx(2.5)
    assert iqm([4, 1, 3, 2]) == pytest.approx(2.5)  # order does not matter


def test_iqm_of_eight_drops_two_at_each_end():
    scores = [0.9, 0.1, 0.5, 1.0, 0.7, 0.3, 0.0, 0.8]
    # sorted: 0.0 0.1 | 0.3 0.5 0.7 0.8 | 0.9 1.0
    assert iqm(scores) == pytest.approx((0.3 + 0.5 + 0.7 + 0.8) / 4)


def test_iqm_of_five_weighs_the_quartile_scores_fractionally():
    # Five scores take fifths of [0, 1]; the middle half [0.25, 0.75] covers 0.15 of the second,
    # all 0.2 of the third and 0.15 of the fourth: weights 0.3, 0.4, 0.3 after dividing by 0.5.
    np.testing.assert_allclose(iqm_weights(5), [0.0, 0.3, 0.4, 0.3, 0.0], atol=1e-12)
    assert iqm([1.0, 0.1, 0.6, 0.9, 0.5]) == pytest.approx(0.3 * 0.5 + 0.4 * 0.6 + 0.3 * 0.9)  # 0.66
    # scipy.stats.trim_mean(x, 0.25) would drop one score at each end and give (0.5 + 0.6 + 0.9) / 3.
    assert iqm([1.0, 0.1, 0.6, 0.9, 0.5]) != pytest.approx((0.5 + 0.6 + 0.9) / 3)


@pytest.mark.parametrize("n", range(1, 13))
def test_iqm_weights_sum_to_one_and_are_symmetric(n):
    weights = iqm_weights(n)
    assert weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(weights, weights[::-1], atol=1e-12)
    assert iqm([0.7] * n) == pytest.approx(0.7)


def test_bootstrap_of_identical_scores_collapses_to_them():
    low, high = bootstrap_ci([0.95, 0.95, 0.95, 0.95, 0.95])
    assert low == pytest.approx(0.95) and high == pytest.approx(0.95)


def test_bootstrap_is_reproducible_and_contains_the_iqm():
    scores = [0.62, 0.98, 0.85, 1.0, 0.71, 0.93, 0.88]
    first = bootstrap_ci(scores)
    assert bootstrap_ci(scores) == first  # same fixed seed, same interval, bit for bit
    low, high = first
    assert low < iqm(scores) < high
    assert min(scores) <= low and high <= max(scores)
    assert bootstrap_ci(scores, seed=1) != first  # the seed is what fixes it


def test_aggregate_reports_iqm_interval_min_mean():
    result = aggregate([1.0, 0.99, 0.98])
    assert result["n_runs"] == 3
    assert result["iqm"] == pytest.approx(0.99)  # n = 3: weights 1/6, 2/3, 1/6
    assert result["min"] == pytest.approx(0.98) and result["mean"] == pytest.approx(0.99)
    assert result["iqm_ci95"][0] <= result["iqm"] <= result["iqm_ci95"][1]
    assert result["bootstrap"]["resamples"] == 10_000 and "quantile" in result["iqm_definition"]


@pytest.mark.parametrize("scores", [[], [0.5, float("nan")], [[0.1, 0.2]]])
def test_bad_scores_are_refused(scores):
    with pytest.raises(ValueError):
        iqm(scores)


def test_paired_difference_counts_the_episodes_each_policy_alone_solves():
    result = paired_difference([True, True, False, False, True], [True, False, False, True, False])
    assert result["difference"] == pytest.approx(0.6 - 0.4)
    assert (result["gained"], result["lost"], result["n_episodes"]) == (2, 1, 5)
    low, high = result["difference_ci95"]
    assert -1 <= low <= 0.2 <= high <= 1


def test_paired_difference_interval_collapses_when_the_pairs_agree_and_excludes_zero_for_a_clear_gain():
    same = [True] * 60 + [False] * 40
    assert paired_difference(same, same)["difference_ci95"] == [0.0, 0.0]
    # Both solve 80 episodes; the policy alone solves 12 more and fails none the base solves.
    ours, base = [True] * 92 + [False] * 8, [True] * 80 + [False] * 20
    result = paired_difference(ours, base)
    assert result["difference"] == pytest.approx(0.12) and (result["gained"], result["lost"]) == (12, 0)
    assert 0 < result["difference_ci95"][0] < 0.12 < result["difference_ci95"][1]
    assert paired_difference(ours, base) == result  # seeded: the same interval every time


def test_paired_difference_refuses_lists_of_other_lengths():
    with pytest.raises(ValueError, match="equally long"):
        paired_difference([True, False], [True])
    with pytest.raises(ValueError, match="equally long"):
        paired_difference([], [])


# ---------------------------------------------------------------------- eval_policy.py over several checkpoints
EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "checkpoints" / "residual_jacobian_seed1.pt"


def residual_scaled(path, scale: float) -> str:
    """The example checkpoint with its residual's last layer times `scale` (0: the base exactly)."""
    checkpoint = torch.load(EXAMPLE, weights_only=True)
    agent = ppo.Agent(so101_env.STATE_DIM, so101_env.ACTION_DIM, checkpoint["args"]["hidden_size"])
    agent.load_state_dict(checkpoint["agent"])
    with torch.no_grad():
        agent.actor_mean[-1].weight.mul_(scale)
        agent.actor_mean[-1].bias.mul_(scale)
    save_checkpoint(path, {**checkpoint, "agent": agent.state_dict(),
                           "actor_program": export_actor(agent.residual_mean, so101_env.STATE_DIM, so101_env.ACTION_DIM)})
    return str(path)


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    return [residual_scaled(root / "seed1" / "final.pt", 1.0), residual_scaled(root / "seed2" / "final.pt", 0.0)]


def test_several_checkpoints_meet_the_same_episodes_and_are_aggregated(two_seeds, tmp_path, capsys):
    out = tmp_path / "seeds.json"
    summaries = eval_policy.main(eval_policy.Args(model_paths=two_seeds, compare_base=True, compare_zero=True,
                                                  n_episodes=2, seed=3, output_json=str(out)))
    names = [s["policy"] for s in summaries]
    # Both checkpoints are on the same Jacobian base: it is evaluated once.
    assert names == ["residual+jacobian seed1/final.pt", "residual+jacobian seed2/final.pt", "jacobian", "zero"]
    assert all([e["seed"] for e in s["episodes"]] == [3, 4] for s in summaries)
    # seed2's residual is zero: its episodes are the base's, which shows they met the same papers.
    assert summaries[1]["episodes"] == summaries[2]["episodes"]
    # Each residual is compared with its base, episode by episode; the zero residual differs in none.
    assert summaries[1]["versus_base"]["difference_ci95"] == [0.0, 0.0]
    assert (summaries[1]["versus_base"]["gained"], summaries[1]["versus_base"]["lost"]) == (0, 0)
    first = [(e["success"], b["success"]) for e, b in zip(summaries[0]["episodes"], summaries[2]["episodes"])]
    assert summaries[0]["versus_base"]["gained"] == first.count((True, False))
    assert "versus_base" not in summaries[2] and "versus_base" not in summaries[3]

    result = json.loads(out.read_text())
    assert result["model_paths"] == two_seeds and result["randomization_scale"] == 1.0
    assert [p.get("model_path") for p in result["policies"]] == [*two_seeds, None, None]
    rates = [s["success_rate"] for s in summaries[:2]]
    assert result["aggregate"]["success_rates"] == rates and result["aggregate"]["checkpoints"] == two_seeds
    assert result["aggregate"]["iqm"] == pytest.approx(iqm(rates))
    assert result["aggregate"]["iqm_ci95"] == pytest.approx(list(bootstrap_ci(rates)))
    printed = capsys.readouterr().out
    assert "over 2 checkpoints" in printed and "residual+jacobian seed2/final.pt - jacobian: +0.0 points" in printed


def test_each_residual_is_paired_with_its_own_base_when_their_bases_differ(two_seeds, tmp_path):
    other = torch.load(two_seeds[1], weights_only=True)
    other["base_config"] = {**other["base_config"], "act_scale": 0.03}  # a second, distinct Jacobian base
    save_checkpoint(tmp_path / "other_base.pt", other)
    summaries = eval_policy.main(eval_policy.Args(model_paths=[two_seeds[0], str(tmp_path / "other_base.pt")],
                                                  compare_base=True, n_episodes=2, seed=3))
    assert [s["policy"] for s in summaries[2:]] == ["jacobian (1)", "jacobian (2)"]
    # The second residual is zero, so it and its own base (not the first residual's) agree on every episode.
    assert summaries[1]["episodes"] == summaries[3]["episodes"]
    assert summaries[1]["versus_base"]["difference_ci95"] == [0.0, 0.0]
    first = [(e["success"], b["success"]) for e, b in zip(summaries[0]["episodes"], summaries[2]["episodes"])]
    assert summaries[0]["versus_base"]["lost"] == first.count((False, True))


def test_aggregate_json_combines_separate_runs_like_one_run(two_seeds, tmp_path, capsys):
    files = []
    for index, path in enumerate(two_seeds):
        files.append(str(tmp_path / f"seed{index + 1}.json"))
        eval_policy.main(eval_policy.Args(model_path=path, compare_base=index == 0, n_episodes=2, seed=3,
                                          output_json=files[-1]))
    joint = tmp_path / "joint.json"
    eval_policy.main(eval_policy.Args(model_paths=two_seeds, n_episodes=2, seed=3, output_json=str(joint)))
    combined = tmp_path / "combined.json"
    summaries = eval_policy.main(eval_policy.Args(aggregate_json=files, output_json=str(combined)))
    assert [s["model_path"] for s in summaries] == two_seeds
    assert json.loads(combined.read_text())["aggregate"] == json.loads(joint.read_text())["aggregate"]
    assert "IQM" in capsys.readouterr().out

    # Files written before --model-paths existed name the checkpoint at the top level only.
    legacy = tmp_path / "legacy.json"
    first = json.loads(pathlib.Path(files[0]).read_text())  # residual and base: {"policies": [...]}
    for summary in first["policies"]:
        summary.pop("model_path", None)
    legacy.write_text(json.dumps({"seed": 3, "model_path": two_seeds[0], "policies": first["policies"]}))
    summaries = eval_policy.main(eval_policy.Args(aggregate_json=[str(legacy), files[1]]))
    assert [s["model_path"] for s in summaries] == two_seeds

    # Refused: other episodes, the same checkpoint twice, one checkpoint only, episodes asked for too.
    other = json.loads(pathlib.Path(files[1]).read_text())
    other["episodes"][0]["seed"] = 99
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="same episodes"):
        eval_policy.main(eval_policy.Args(aggregate_json=[files[0], str(tmp_path / "other.json")]))
    with pytest.raises(SystemExit, match="appears twice"):
        eval_policy.main(eval_policy.Args(aggregate_json=[files[0], files[0]]))
    with pytest.raises(SystemExit, match="at least two"):
        eval_policy.main(eval_policy.Args(aggregate_json=[files[1]]))
    with pytest.raises(SystemExit, match="runs no episodes: drop --model-path"):
        eval_policy.main(eval_policy.Args(aggregate_json=files, model_path=two_seeds[0]))



def test_aggregate_json_pairs_each_checkpoint_with_a_base_row_from_any_file(two_seeds, tmp_path, capsys):
    base, files = tmp_path / "base.json", []
    eval_policy.main(eval_policy.Args(base_policy="jacobian", n_episodes=2, seed=3, output_json=str(base)))
    for index, path in enumerate(two_seeds):
        files.append(str(tmp_path / f"seed{index + 1}.json"))
        eval_policy.main(eval_policy.Args(model_path=path, n_episodes=2, seed=3, output_json=files[-1]))
    together = eval_policy.main(eval_policy.Args(model_paths=two_seeds, compare_base=True, n_episodes=2, seed=3))
    capsys.readouterr()

    summaries = eval_policy.main(eval_policy.Args(aggregate_json=[str(base), *files], output_json=str(tmp_path / "all.json")))
    # The same pairing as evaluating them together with --compare-base; the zero residual (seed 2) is its base.
    assert [s["versus_base"] for s in summaries] == [s["versus_base"] for s in together[:2]]
    assert summaries[1]["versus_base"]["lost"] == 0 and summaries[1]["versus_base"]["difference"] == 0.0
    assert summaries[1]["versus_base"]["base_successes"] == sum(e["success"] for e in together[2]["episodes"])
    assert [s["policy"] for s in summaries] == ["residual+jacobian seed1/final.pt", "residual+jacobian seed2/final.pt"]
    assert "residual+jacobian seed2/final.pt - jacobian: +0.0 points" in capsys.readouterr().out
    assert [b["policy"] for b in json.loads((tmp_path / "all.json").read_text())["bases"]] == ["jacobian"]
    # One checkpoint and its base are enough to pair.
    assert "versus_base" in eval_policy.main(eval_policy.Args(aggregate_json=[files[0], str(base)]))[0]

    # Two rows of one base name that disagree on an episode are not one base.
    other = json.loads(base.read_text())
    other["episodes"][0]["success"] = not other["episodes"][0]["success"]
    (tmp_path / "other_base.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="'jacobian' rows of .*base.json and .*other_base.json differ"):
        eval_policy.main(eval_policy.Args(aggregate_json=[str(base), str(tmp_path / "other_base.json"), *files]))

def test_a_checkpoint_named_twice_is_refused(two_seeds):
    with pytest.raises(SystemExit, match="named twice"):
        eval_policy.main(eval_policy.Args(model_path=two_seeds[0], model_paths=two_seeds, n_episodes=1))


# ---------------------------------------------------------------------- eval_policy.py --randomization-scale
def test_randomization_scale_multiplies_all_four_ranges_and_is_recorded(tmp_path):
    wide = so101_env.scaled_randomization(2.0)
    assert (wide.paper_xy, wide.paper_yaw, wide.friction, wide.mass) == pytest.approx((0.1, 0.6, 0.4, 0.2))
    out = tmp_path / "wide.json"
    eval_policy.main(eval_policy.Args(base_policy="zero", n_episodes=1, randomization_scale=2.0, output_json=str(out)))
    result = json.loads(out.read_text())
    assert result["randomization_scale"] == 2.0 and result["randomization"]["paper_xy"] == pytest.approx(0.1)


@pytest.mark.parametrize("scale, message", [(0.0, "must be within"), (3.5, "must be within"),
                                            (float("nan"), "must be a finite number")])
def test_randomization_scale_out_of_bounds_is_refused(scale, message):
    with pytest.raises(SystemExit, match=f"--randomization-scale {message}"):
        eval_policy.main(eval_policy.Args(base_policy="zero", n_episodes=1, randomization_scale=scale))


def test_randomization_that_breaks_the_physics_or_leaves_the_table_is_named():
    # Beyond the CLI's bound, to check the guards that protect other default ranges.
    assert so101_env.randomization_problems(2.0) == [] and so101_env.randomization_problems(3.0) == []
    friction, = so101_env.randomization_problems(5.0)  # friction +-100 %: a draw of zero
    assert "zero or negative paper-table friction" in friction and "below 5" in friction
    problems = so101_env.randomization_problems(12.0)
    assert any("off the 1.20 x 1.20 m table" in p for p in problems)
    assert any("zero or negative paper mass" in p for p in problems)


def test_training_randomization_scale_reaches_the_training_envs_only():
    import ppo_residual_jacobian as ppo

    env = ppo.make_env(ppo.Args(randomization_scale=1.5), 0.08)()
    assert env.unwrapped.randomization == so101_env.scaled_randomization(1.5)
    assert ppo.make_env(ppo.Args(), 0.08)().unwrapped.randomization == so101_env.Randomization()


def test_twice_the_randomization_resets_the_paper_flat_on_the_table():
    env = so101_env.SO101PaperSquareEnv(randomization=so101_env.scaled_randomization(2.0))
    table = env.model.geom("table")
    half = env._paper_half_extents
    offsets = []
    for seed in range(100):
        _, info = env.reset(seed=seed)
        offsets.append(info["paper_offset"])
        assert abs(info["paper_yaw"]) <= 0.6 and abs(info["friction_scale"] - 1) <= 0.4 and abs(info["mass_scale"] - 1) <= 0.2
        x, y, yaw = *env.data.xpos[env._paper_body][:2], info["paper_yaw"]
        rot = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
        corners = np.array([x, y]) + (np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]]) * half) @ rot.T
        assert np.all(np.abs(corners - table.pos[:2]) < table.size[:2])  # every corner over the table
        success, _, _ = env._task_status()
        assert not success  # never placed in the square already
        for _ in range(3):
            _, _, _, truncated, step_info = env.step(np.zeros(6))
            assert not truncated and "sim_unstable" not in step_info
        assert env.data.xpos[env._paper_body][2] < so101_env.ON_TABLE_MAX_HEIGHT  # still lying flat
    offsets = np.abs(np.array(offsets))
    assert offsets.max() <= 0.1 and offsets.max() > 0.08  # the wider range is used, up to its end

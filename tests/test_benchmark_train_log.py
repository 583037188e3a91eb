"""The DVRL benchmark's training log (benchmarks/dvrl/train_log.py): what it records about the acting policy; the
windowed training returns of its probe table (benchmarks/dvrl/probe_table.py) and of its dips (benchmarks/dvrl/dips.py);
the final-return tables of its summary (benchmarks/dvrl/summarize.py)."""

import json
import sys
from pathlib import Path

import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_bayes.dvrl import DVRL

# benchmarks/ is not part of the installed package: import it from the checkout, after the installed packages.
sys.path.append(str(Path(__file__).resolve().parents[1]))
from benchmarks.dvrl.dips import STATISTICS, correlations, window_pairs  # noqa: E402
from benchmarks.dvrl.probe_table import SETTLED_STEP, WINDOW, window_returns  # noqa: E402
from benchmarks.dvrl.summarize import final_tables  # noqa: E402
from benchmarks.dvrl.train_log import TrainLogCallback  # noqa: E402

SMALL = dict(h_dim=16, z_dim=4, encoder_sizes=[8], action_encoding=4)


def test_train_log_records_actions_and_actor(tmp_path) -> None:
    th.set_num_threads(1)
    # No learning (lr 0) and a zero actor head: every raw actor output is exactly 0, the features are not.
    model = DVRL(
        "MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), n_steps=4, learning_rate=0.0, policy_kwargs=SMALL, seed=0
    )
    with th.no_grad():
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.zero_()
    path = tmp_path / "train_log.json"
    model.learn(64, callback=TrainLogCallback(str(path), every=16))
    records = json.loads(path.read_text())
    assert [record["step"] for record in records] == [16.0, 32.0, 48.0]
    for record in records:
        assert record["actor_output_abs_mean"] == 0.0
        assert record["actor_feature_norm"] > 0.0
        assert 0.0 <= record["clipped_fraction"] <= 1.0
        # The sampled actions of a rollout: N(0, 1) around a zero mean in Pendulum's [-2, 2] box.
        assert np.isfinite(record["action_abs_mean"]) and record["action_abs_mean"] > 0.0
    assert not model.policy.action_net._forward_hooks  # the hook is gone with the training run
    assert np.isfinite(records[-1]["elbo"]) and np.isfinite(records[-1]["ess"])  # the update's logger values


def test_probe_table_window_returns_match_a_brute_force() -> None:
    rng = np.random.default_rng(0)
    ends = np.sort(rng.integers(1, 4 * WINDOW + 1, size=60))
    ends = ends[(ends <= WINDOW) | (ends > 2 * WINDOW)]  # the second window gets no episode
    episodes = [dict(rank=i % 3, ret=float(-i), end_step=int(end)) for i, end in enumerate(ends)]
    means = window_returns(episodes, 4 * WINDOW)
    assert means.shape == (4,) and np.isnan(means[1])
    for index in (0, 2, 3):
        inside = [e["ret"] for e in episodes if index * WINDOW < e["end_step"] <= (index + 1) * WINDOW]
        assert means[index] == np.mean(inside)


def test_summary_tables_evaluate_deterministic_and_sampled_actions() -> None:
    env = "MountainHikeNoise1-v0 (500k)"

    def run(deterministic: list[float], sampled: list[float] | None) -> dict:
        results = {"eval_returns": deterministic}
        if sampled is not None:
            results["eval_returns_stochastic"] = sampled
        return {"steps": 500_000, "results": results}

    # DVRL: two seeds with both evaluations; RNN: one seed evaluated deterministically only (an older run).
    by_env = {env: {"dvrl": [run([-100.0, -200.0], [-150.0, -150.0]), run([-300.0], [-250.0])], "rnn": [run([-50.0], None)]}}
    references = {"MountainHikeNoise1-v0": {"memoryless": {"mean": -192.1}}}
    lines = final_tables(by_env, [env], references)
    deterministic, sampled = (lines.index(line) for line in lines if line.startswith("\n#### Final return"))
    assert "(deterministic actions)" in lines[deterministic] and "(sampled actions)" in lines[sampled]
    cells = [cell.strip() for cell in lines[deterministic + 3].strip("|").split("|")]
    # Per seed the mean over episodes (-150, -300), then mean ± std over seeds.
    assert cells[2:5] == ["-225.0 ± 75.0 (2)", "-50.0 ± 0.0 (1)", "not run"]
    assert cells[7] == "-192.1"
    cells = [cell.strip() for cell in lines[sampled + 3].strip("|").split("|")]
    assert cells[2:5] == ["-200.0 ± 50.0 (2)", "not run", "not run"]


def test_dips_pair_each_logged_window_with_its_statistics() -> None:
    rng = np.random.default_rng(1)
    ends = np.sort(rng.integers(SETTLED_STEP - WINDOW, SETTLED_STEP + 6 * WINDOW, size=80))
    episodes = [dict(rank=0, ret=float(rng.normal(-200, 30)), end_step=int(end)) for end in ends]
    log = [
        {"step": float(SETTLED_STEP + k * WINDOW + 40), **{name: float(rng.normal()) for name in STATISTICS}}
        for k in range(-1, 6)
    ]
    del log[3]["ess"]  # the RNN baseline logs no effective sample size
    pairs = window_pairs({"results": {"episodes": episodes, "train_log": log}})
    assert [step for step, _, _ in pairs] == [record["step"] for record in log[1:]]  # none before the settled step
    for step, mean, _ in pairs:
        assert mean == np.mean([e["ret"] for e in episodes if step - WINDOW < e["end_step"] <= step])
    assert np.isnan(pairs[2][2]["ess"])
    r = correlations(pairs)
    for name in STATISTICS:
        kept = [(mean, stats[name]) for _, mean, stats in pairs if np.isfinite(stats[name])]
        assert len(kept) == (5 if name == "ess" else 6)
        assert np.isclose(r[name], np.corrcoef(*np.array(kept).T)[0, 1])

"""Continual learning runner: forgetting matrix, consolidation after each task, EWC anchors, plain SB3 models, CLI."""

import csv
import json

import numpy as np
import pytest
import torch as th
from stable_baselines3 import TD3

from sb3_bayes.bayes_ddpg import BayesianDDPG
from sb3_bayes.continual import SEQUENCES, Task, make_task_env, run_sequence, save_result
from sb3_bayes.continual.__main__ import main

TASKS = [Task("Pendulum-v1", {"g": g, "max_episode_steps": 20}) for g in (10.0, 4.0)]
TINY = dict(learning_starts=10, batch_size=16, policy_kwargs=dict(net_arch=[16]))


def test_bayes_ddpg_sequence_with_ewc_writes_matrix(tmp_path):
    model = BayesianDDPG("MlpPolicy", make_task_env(TASKS[0], seed=0), seed=0, consolidation="ewc", **TINY)
    calls = []
    consolidate = model.consolidate

    def spy(n_samples: int = 10_000) -> None:
        calls.append((model.num_timesteps, n_samples))
        consolidate(n_samples=n_samples)

    model.consolidate = spy  # type: ignore[method-assign]
    anchors = []

    def after_task(i: int, m: BayesianDDPG) -> None:
        assert m.ewc is not None
        ewc = m.ewc["actor"]
        anchors.append({name: ewc.anchor_of(name).clone() for name in ewc.parameter_names})
        # EWC anchors exist after the task: they are the actor's current posterior means, with a non-zero Fisher.
        assert int(ewc.n_consolidations) == i + 1
        for name, param in m.actor.named_parameters():
            if name in ewc.parameter_names:
                assert th.equal(anchors[-1][name], param.detach())
        assert float(sum(ewc.fisher_of(name).sum() for name in ewc.parameter_names)) > 0

    result = run_sequence(
        model, TASKS, n_timesteps=40, n_eval_episodes=2, consolidate_samples=25, seed=0, on_task_end=after_task
    )
    # consolidate() once after each task, at the task's end
    assert calls == [(40, 25), (80, 25)]
    assert result.consolidated == [True, True] and result.consolidation == "ewc"
    assert result.returns.shape == (2, 2) and np.all(np.isfinite(result.returns))
    assert np.all(result.returns < 0)  # Pendulum returns are negative
    assert result.forgetting().shape == (1,)
    assert result.forgetting()[0] == pytest.approx(result.returns[0, 0] - result.returns[1, 0])
    assert any(not th.equal(anchors[0][n], anchors[1][n]) for n in anchors[0])  # re-anchored after task 2
    # the buffer was emptied at the switch: it holds the second task's 40 steps only
    assert model.replay_buffer is not None and model.replay_buffer.size() == 40

    paths = save_result(result, tmp_path, "run")
    with open(paths["csv"]) as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["after_task", "Pendulum-v1(g=10.0,max_episode_steps=20)", "Pendulum-v1(g=4.0,max_episode_steps=20)"]
    assert len(rows) == 3 and all(len(row) == 3 for row in rows)
    np.testing.assert_allclose(np.array([[float(v) for v in row[1:]] for row in rows[1:]]), result.returns, atol=1e-3)
    assert paths["png"].stat().st_size > 1000
    summary = json.loads(paths["json"].read_text())
    assert summary["average_final_return"] == pytest.approx(result.returns[-1].mean())
    assert summary["consolidation"] == "ewc" and summary["consolidated"] == [True, True]


def test_consolidation_none_is_not_recorded_as_consolidated():
    # The model has consolidate(), but with consolidation="none" it does nothing: the record says so.
    model = BayesianDDPG("MlpPolicy", make_task_env(TASKS[0], seed=0), seed=0, consolidation="none", **TINY)
    result = run_sequence(model, TASKS, n_timesteps=15, n_eval_episodes=1, seed=0)
    assert result.consolidated == [False, False] and result.consolidation == "none"
    summary = result.summary()
    assert summary["consolidation"] == "none" and summary["consolidated"] == [False, False]


def test_plain_sb3_model_without_consolidate_and_kept_buffer():
    model = TD3("MlpPolicy", make_task_env(TASKS[0], seed=0), seed=0, **TINY)
    result = run_sequence(model, TASKS, n_timesteps=[30, 20], n_eval_episodes=1, reset_buffer=False, seed=0)
    assert result.consolidated == [False, False] and result.consolidation == "none"  # TD3 has no consolidate()
    assert result.returns.shape == (2, 2)
    assert model.replay_buffer is not None and model.replay_buffer.size() == 50
    assert model.num_timesteps == 50


def test_task_parsing_sequences_and_attributes():
    task = Task.parse("Pendulum-v1:g=4.5,max_episode_steps=50")
    assert task.env_kwargs == {"g": 4.5, "max_episode_steps": 50} and task.attributes == {}
    cart = Task.parse("CartPole-v1@length=1.0")
    env = make_task_env(cart)
    unwrapped = env.envs[0].unwrapped  # type: ignore[attr-defined]
    assert unwrapped.length == 1.0 and unwrapped.polemass_length == pytest.approx(unwrapped.masspole * 1.0)
    assert Task.parse("BreakoutNoFrameskip-v4:full_action_space=True").env_kwargs == {"full_action_space": True}
    assert [t.env_kwargs["g"] for t in SEQUENCES["pendulum-gravity"]] == [10.0, 4.0, 16.0]
    assert all(t.is_atari and t.env_kwargs["full_action_space"] for t in SEQUENCES["atari-full-action"])
    with pytest.raises(ValueError, match="no attribute"):
        make_task_env(Task.parse("CartPole-v1@nonexistent=1"))
    model = TD3("MlpPolicy", make_task_env(TASKS[0]), **TINY)
    with pytest.raises(ValueError, match="action space"):
        run_sequence(model, [TASKS[0], Task("MountainCarContinuous-v0")], n_timesteps=15, n_eval_episodes=1)


def test_atari_full_action_space_tasks_share_spaces():
    envs = [make_task_env(task) for task in SEQUENCES["atari-full-action"]]
    assert all(env.action_space.n == 18 for env in envs)  # type: ignore[attr-defined]
    assert all(env.observation_space.shape == (84, 84, 4) for env in envs)
    for env in envs:
        env.close()


def test_command_line(tmp_path):
    summary = main(
        [
            "--algo",
            "bayes_ddpg",
            "--tasks",
            "Pendulum-v1:g=10.0,max_episode_steps=20",
            "Pendulum-v1:g=4.0,max_episode_steps=20",
            "--n-timesteps",
            "30",
            "--hyperparams",
            json.dumps(TINY),
            "--consolidation",
            "vcl",
            "--n-eval-episodes",
            "1",
            "--out",
            str(tmp_path),
            "--name",
            "cli",
        ]
    )
    assert summary["consolidated"] == [True, True] and len(summary["final_returns"]) == 2
    assert summary["consolidation"] == "vcl"
    assert (tmp_path / "cli.csv").exists() and (tmp_path / "cli.png").exists()
    assert "--consolidation vcl" in json.loads((tmp_path / "cli.json").read_text())["command"]


def test_bayes_dqn_on_the_cartpole_length_sequence():
    # The discrete sibling goes through the same runner: consolidate() after each task, attributes set per task.
    from sb3_bayes.bayes_dqn import BayesianDQN

    tasks = [Task("CartPole-v1", attributes={"length": length}) for length in (0.5, 2.0)]
    model = BayesianDQN("MlpPolicy", make_task_env(tasks[0], seed=0), seed=0, consolidation="ewc", **TINY)
    result = run_sequence(model, tasks, n_timesteps=30, n_eval_episodes=1, consolidate_samples=16, seed=0)
    assert result.consolidated == [True, True] and result.consolidation == "ewc" and result.returns.shape == (2, 2)
    assert np.all(result.returns >= 1)  # CartPole pays 1 per step
    assert model.get_env().envs[0].unwrapped.length == 2.0  # type: ignore[union-attr]

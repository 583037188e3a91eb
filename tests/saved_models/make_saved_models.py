"""Writes the models that ``tests/test_saved_models.py`` loads: one small, briefly trained model per algorithm (and per
BayesianDQN head), saved by the sb3-bayes of the commit that runs this script, with the actions that same version
predicts after loading it.

A later version must load these files and act the same: this is how "models saved before a change still load" is
checked. Regenerate them only when the save format changes on purpose (and say so in the changelog); to add the files of
a new version, run this script from a checkout of it (they go to ``tests/saved_models/<version>/``)::

    python tests/saved_models/make_saved_models.py

Everything is seeded and uses one torch thread, so the files are the same on every run on one machine.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv

import sb3_bayes
from sb3_bayes import DVRL, PETS, PSDRL, BayesianDDPG, BayesianDQN

HERE = os.path.dirname(os.path.abspath(__file__))

#: Observations per model at which the predictions are stored.
N_OBSERVATIONS = 8


def short_pendulum(n_envs: int = 1) -> VecEnv:
    return make_vec_env("Pendulum-v1", n_envs=n_envs, seed=0, env_kwargs=dict(max_episode_steps=20))


def cartpole(n_envs: int = 1) -> VecEnv:
    return make_vec_env("CartPole-v1", n_envs=n_envs, seed=0)


#: name -> (algorithm class, env builder, constructor kwargs, training steps). Small enough to keep each file small.
#: Written out here rather than taken from test_run.py: they describe files already saved and must not follow later edits.
MODELS: dict[str, tuple[type[BaseAlgorithm], Callable[[], VecEnv], dict[str, Any], int]] = {
    "pets": (
        PETS,
        short_pendulum,
        dict(
            reward_fn="auto",
            plan_horizon=3,
            popsize=8,
            num_elites=2,
            cem_iters=2,
            n_particles=5,
            n_epochs=1,
            policy_kwargs=dict(net_arch=[16, 16]),
        ),
        60,
    ),
    "psdrl": (
        PSDRL,
        cartpole,
        dict(
            batch_size=8,
            sequence_length=10,
            warmup_freq=20,
            value_batch_size=64,
            buffer_size=200,
            policy_kwargs=dict(latent_dim=8, gru_dim=8, encoder_hidden_dim=16),
        ),
        60,
    ),
    "dvrl": (
        DVRL,
        cartpole,
        dict(n_particles=3, n_steps=4, multiplier_backprop_length=2, policy_kwargs=dict(h_dim=16, z_dim=8, action_encoding=8)),
        48,
    ),
    "bayes_ddpg": (
        BayesianDDPG,
        short_pendulum,
        dict(learning_starts=20, batch_size=16, buffer_size=100, consolidation="ewc", policy_kwargs=dict(net_arch=[16])),
        60,
    ),
    **{
        f"bayes_dqn_{head}": (
            BayesianDQN,
            cartpole,
            dict(
                head=head,
                learning_starts=30,
                batch_size=16,
                buffer_size=100,
                train_freq=4,
                target_update_interval=20,
                posterior_update_freq=20,
                policy_kwargs=dict(net_arch=[16]),
            ),
            80,
        )
        for head in ("bbb", "blr", "ensemble")
    },
}


def stored_predictions(model: BaseAlgorithm, observations: np.ndarray) -> dict[str, np.ndarray]:
    """
    What the loaded model does at ``observations``, fed one at a time from a fresh episode, deterministically and
    stochastically after seeding torch and numpy: the actions, and the recurrent state ``predict`` returns after the last
    observation (DVRL's belief, PSDRL's hidden state; empty for the others).
    """
    result = {}
    for deterministic in (True, False):
        mode = "deterministic" if deterministic else "stochastic"
        th.manual_seed(123)
        np.random.seed(123)
        state = None
        actions = []
        for i, observation in enumerate(observations):
            action, state = model.predict(
                observation[None], state=state, episode_start=np.array([i == 0]), deterministic=deterministic
            )
            actions.append(action[0])
        result[f"{mode}_actions"] = np.asarray(actions)
        result[f"{mode}_state"] = np.concatenate([np.ravel(part) for part in state]) if state is not None else np.zeros(0)
    return result


def parameter_sums(model: BaseAlgorithm) -> dict[str, np.ndarray]:
    """Every tensor the policy saves, by name, as its float64 sum: a fingerprint of the names and values that loaded."""
    state = model.policy.state_dict()
    names = sorted(state)
    return {
        "parameter_names": np.array(names),
        "parameter_sums": np.array([state[name].double().sum().item() for name in names]),
    }


def observations_of(env: VecEnv) -> np.ndarray:
    env.seed(7)
    observations = [env.reset()[0]]
    env.action_space.seed(7)
    for _ in range(N_OBSERVATIONS - 1):
        observations.append(env.step(np.array([env.action_space.sample()]))[0][0])
    return np.asarray(observations)


def main() -> None:
    th.set_num_threads(1)
    out = os.path.join(HERE, sb3_bayes.__version__)
    os.makedirs(out, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    for name, (algorithm, make_env, kwargs, steps) in MODELS.items():
        model = algorithm("MlpPolicy", make_env(), seed=0, **kwargs)
        model.learn(steps)
        path = os.path.join(out, f"{name}.zip")
        model.save(path)
        loaded = algorithm.load(path)
        observations = observations_of(make_env())
        np.savez(
            os.path.join(out, f"{name}.npz"),
            observations=observations,
            **parameter_sums(loaded),
            **stored_predictions(loaded, observations),
        )
        print(f"{name}: {os.path.getsize(path)} bytes")
    with open(os.path.join(out, "about.json"), "w") as file:
        json.dump({"sb3_bayes": sb3_bayes.__version__, "commit": commit, "torch": th.__version__}, file, indent=1)


if __name__ == "__main__":
    main()

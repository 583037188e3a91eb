"""
Does ``DVRL.predict`` act as well as the training rollouts do? Trains DVRL (or its RNN baseline) on a Mountain Hike
level with the YAML's settings (16 environments, rewards normalised, actions rescaled to [-1, 1], action cost 2), then
compares the mean return of the last 100 training episodes with the return of ``predict``-driven episodes of the final
model (the belief carried as the recurrent state), with 1 and with 16 environments, sampled and deterministic actions.

From the repository root::

  python -m benchmarks.dvrl.eval_gap --method dvrl --steps 60000 --out benchmarks/dvrl/results/eval_gap/dvrl.json
  python -m benchmarks.dvrl.eval_gap --method rnn --steps 60000 --out benchmarks/dvrl/results/eval_gap/rnn.json

``--snapshots K`` also evaluates K late snapshots of the same run, ``--snapshot-every`` steps apart and ending at
``--steps`` (16 environments, sampled actions, ``--episodes`` episodes each), beside the mean return of the training
episodes that ended since the previous snapshot: if the policy swings from update to update, the snapshots' returns
scatter around the training return instead of all lying below it::

  python -m benchmarks.dvrl.eval_gap --method dvrl --steps 60000 --snapshots 8 --snapshot-every 2500 \
      --out benchmarks/dvrl/results/eval_gap/dvrl_snapshots.json
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

from benchmarks import common


def rescaled(env: gym.Env) -> gym.Env:
    return gym.wrappers.RescaleAction(env, np.float32(-1.0), np.float32(1.0))


def make(env_id: str, n_envs: int, seed: int, normalize: bool) -> Any:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    import sb3_bayes.envs  # noqa: F401  (registers the Mountain Hike ids)

    venv = make_vec_env(env_id, n_envs=n_envs, seed=seed, wrapper_class=rescaled, env_kwargs=dict(action_cost=2.0))
    return VecNormalize(venv, norm_obs=False, norm_reward=True) if normalize else venv


class EpisodeReturns(BaseCallback):
    """Collects the (unnormalised, Monitor-recorded) return of every training episode as it ends."""

    def __init__(self) -> None:
        super().__init__()
        self.returns: list[float] = []

    def _on_step(self) -> bool:
        self.returns += [float(info["episode"]["r"]) for info in self.locals["infos"] if "episode" in info]
        return True


def predict_returns(model: Any, env_id: str, n_envs: int, episodes: int, deterministic: bool, seed: int) -> list[float]:
    venv = make(env_id, n_envs, seed, normalize=False)
    obs, state, start = venv.reset(), None, np.ones(n_envs, dtype=bool)
    totals, returns = np.zeros(n_envs), list[float]()
    while len(returns) < episodes:
        action, state = model.predict(obs, state=state, episode_start=start, deterministic=deterministic)
        obs, rewards, dones, _ = venv.step(action)
        totals += rewards
        for i in np.flatnonzero(dones):
            returns.append(float(totals[i]))
            totals[i] = 0.0
        start = dones
    return returns[:episodes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=("dvrl", "rnn"), required=True)
    parser.add_argument("--env", default="MountainHikeNoise1-v0")
    parser.add_argument("--steps", type=int, default=60_000)
    parser.add_argument("--episodes", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--snapshots", type=int, default=0, help="late snapshots to evaluate (0: the final model only)")
    parser.add_argument("--snapshot-every", type=int, default=2500, help="steps between two snapshots")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from sb3_bayes import DVRL

    th.set_num_threads(1)
    cpu0, wall0 = common.cpu_seconds(), time.perf_counter()
    model = DVRL(
        "MlpPolicy",
        make(args.env, 16, args.seed, normalize=True),
        n_steps=5,
        learning_rate=3e-4,
        max_grad_norm=0.5,
        model_max_grad_norm=0.5,
        n_particles=10,
        elbo_coef=0.1,
        use_particle_filter=args.method == "dvrl",
        policy_kwargs=dict(h_dim=128, z_dim=256, encoder_sizes=[64, 64], action_encoding=64, emission="gaussian"),
        seed=args.seed,
    )
    recorder = EpisodeReturns()
    first_snapshot = args.steps - args.snapshots * args.snapshot_every
    if first_snapshot < 1:
        parser.error("--snapshots x --snapshot-every must be below --steps")
    model.learn(first_snapshot, callback=recorder)
    snapshots = []
    for _ in range(args.snapshots):
        seen = len(recorder.returns)
        model.learn(args.snapshot_every, callback=recorder, reset_num_timesteps=False)
        state = th.get_rng_state()  # the evaluation's draws do not change the training run's
        th.manual_seed(args.seed)
        evaluation = float(np.mean(predict_returns(model, args.env, 16, args.episodes, False, 123)))
        th.set_rng_state(state)
        ended = recorder.returns[seen:]
        training = float(np.mean(ended)) if ended else None  # None: no training episode ended in the interval
        snapshots.append(dict(step=model.num_timesteps, training_since_last=training, predict_16env_sampled=evaluation))
        print(f"{args.method} step {model.num_timesteps}: training {training}, predict (16 envs, sampled) {evaluation:.1f}")
    assert model.ep_info_buffer is not None
    results: dict[str, Any] = dict(training_last_100=float(np.mean([info["r"] for info in model.ep_info_buffer])))
    if snapshots:
        results["snapshots"] = snapshots
    th.manual_seed(args.seed)
    for n_envs in (1, 16):
        for deterministic in (False, True):
            key = f"predict_{n_envs}env_{'deterministic' if deterministic else 'sampled'}"
            results[key] = float(np.mean(predict_returns(model, args.env, n_envs, args.episodes, deterministic, 123)))
    for key, value in results.items():
        if key != "snapshots":
            print(f"{args.method} {key}: {value:.1f}")
    record = common.result_record(
        benchmark="dvrl",
        experiment="eval_gap",
        algorithm=args.method,
        env=args.env,
        seed=args.seed,
        config=dict(steps=args.steps, episodes=args.episodes, snapshots=args.snapshots, snapshot_every=args.snapshot_every),
        results=results,
        cpu_seconds=common.cpu_seconds() - cpu0,
        wall_seconds=time.perf_counter() - wall0,
    )
    common.write_result(args.out, record)


if __name__ == "__main__":
    main()

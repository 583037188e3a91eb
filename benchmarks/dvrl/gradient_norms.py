"""Gradient norms of the A2C and the model (ELBO) terms in DVRL's first updates, with and without reward normalisation.

What the loss-balance option (``model_max_grad_norm``) is about: with one global clip the factor applied to the whole
step is ``max_grad_norm / ||g_a2c + g_model||``, so the ELBO's gradient sets how much of the A2C gradient survives.
This script builds DVRL from the env's section of ``hyperparams/dvrl.yml`` (its wrappers, env_kwargs and settings,
optionally without the reward normalisation), trains it for ``--updates`` updates and records, per update, the norms
before clipping of the A2C gradient and of the model gradient (``train/grad_norm_a2c``, ``train/grad_norm_model``,
logged when the two are clipped separately: the run itself uses the separate clips), and the least share of the A2C
gradient that a global clip would keep at those norms.

    python -m benchmarks.dvrl.gradient_norms --out benchmarks/dvrl/results/belief/gradient_norms.json
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

import sb3_bayes.envs  # noqa: F401  (registers the ids)
from benchmarks.common import Timer, hyperparams_path, load_zoo_section, result_record, write_result
from sb3_bayes.dvrl import DVRL

#: rl-zoo3 keys of a section that are not DVRL arguments.
ZOO_KEYS = ("env_wrapper", "env_kwargs", "normalize", "n_envs", "n_timesteps", "policy")


class NormRecorder(BaseCallback):
    """Copy the last update's gradient norms at the start of every rollout (see train_log.py for why then)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[float, float]] = []

    def _on_rollout_start(self) -> None:
        values = self.model.logger.name_to_value
        if "train/grad_norm_a2c" in values:
            self.records.append((float(values["train/grad_norm_a2c"]), float(values["train/grad_norm_model"])))

    def _on_step(self) -> bool:
        return True


def measure(env_id: str, normalize_rewards: bool, updates: int, seed: int) -> dict[str, Any]:
    """
    :param env_id: The env (its section of hyperparams/dvrl.yml).
    :param normalize_rewards: Whether rewards go through VecNormalize (observations never do).
    :param updates: Number of updates.
    :param seed: Seed of the env and the model.
    :return: Per-update norms and their summary.
    """
    from rl_zoo3.utils import get_wrapper_class

    _, section = load_zoo_section(hyperparams_path("dvrl.yml"), env_id)
    env = make_vec_env(
        env_id,
        n_envs=section["n_envs"],
        seed=seed,
        wrapper_class=get_wrapper_class(section),
        env_kwargs=section.get("env_kwargs") or {},
    )
    if normalize_rewards:
        env = VecNormalize(env, norm_obs=False, norm_reward=True, gamma=section["gamma"])
    kwargs = {key: value for key, value in section.items() if key not in ZOO_KEYS}
    kwargs["model_max_grad_norm"] = kwargs.get("model_max_grad_norm") or kwargs["max_grad_norm"]  # to log both norms
    model = DVRL(section["policy"], env, seed=seed, **kwargs)
    recorder = NormRecorder()
    model.learn(updates * model.n_steps * model.n_envs + 1, callback=recorder)
    a2c, elbo = np.array(recorder.records).T
    # The share of the A2C gradient a global clip keeps is min(1, c / ||g_a2c + g_model||); the sum's norm is not
    # logged, and ||g_a2c + g_model|| <= ||g_a2c|| + ||g_model|| gives the least share it can be (reported as such).
    global_share = np.minimum(1.0, model.max_grad_norm / (a2c + elbo))
    separate_share = np.minimum(1.0, model.max_grad_norm / a2c)
    return dict(
        normalize_rewards=normalize_rewards,
        grad_norm_a2c=a2c.tolist(),
        grad_norm_model=elbo.tolist(),
        median_a2c=float(np.median(a2c)),
        median_model=float(np.median(elbo)),
        median_share_kept_global_clip_at_least=float(np.median(global_share)),
        median_share_kept_separate_clip=float(np.median(separate_share)),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="MountainHikeNoise0p5-v0")
    p.add_argument("--updates", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    th.set_num_threads(1)
    with Timer() as timer:
        results = {
            "raw_rewards": measure(args.env, False, args.updates, args.seed),
            "normalized_rewards": measure(args.env, True, args.updates, args.seed),
        }
    for name, r in results.items():
        least, separate = r["median_share_kept_global_clip_at_least"], r["median_share_kept_separate_clip"]
        print(
            f"{name}: median norms A2C {r['median_a2c']:.3g}, model {r['median_model']:.3g}; share of the A2C gradient "
            f"kept: global clip >= {least:.3g}, separate {separate:.3g}"
        )
    record = result_record(
        benchmark="dvrl",
        experiment="gradient_norms",
        algorithm="dvrl",
        env=args.env,
        seed=args.seed,
        config=dict(updates=args.updates),
        results=results,
        cpu_seconds=round(timer.cpu_seconds, 2),
        wall_seconds=round(timer.wall_seconds, 2),
    )
    write_result(args.out, record)


if __name__ == "__main__":
    main()

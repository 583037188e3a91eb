"""Pieces of the interaction loop shared by algorithms that write their own ``learn`` (PETS, PSDRL)."""

import sys
import time
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import safe_mean
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs


def final_observations(new_obs: VecEnvObs, dones: np.ndarray, infos: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """
    The true next observations of a ``VecEnv`` step and which episodes terminated.

    A ``VecEnv`` resets finished environments at once and returns the first observation of the next episode; the
    last observation of the finished one is in ``infos[i]["terminal_observation"]``. Episodes cut by a time limit are
    truncated, not terminated: their next state still has a value.

    :param new_obs: Observations returned by ``step``.
    :param dones: Episode ends.
    :param infos: Step infos.
    :return: ``(next_observations, terminations)`` with terminations as float32 0/1.
    """
    if not isinstance(new_obs, np.ndarray):
        raise ValueError(f"Expected array observations from the VecEnv, got {type(new_obs).__name__}.")
    next_obs = np.array(new_obs, copy=True)
    terminations = np.zeros(len(dones), dtype=np.float32)
    for i, done in enumerate(dones):
        if done:
            next_obs[i] = infos[i]["terminal_observation"]
            terminations[i] = float(not infos[i].get("TimeLimit.truncated", False))
    return next_obs, terminations


def dump_rollout_logs(model: BaseAlgorithm) -> None:
    """
    Record episode and time statistics (as SB3's off-policy algorithms do) and write everything recorded.

    :param model: The algorithm whose logger to write.
    """
    assert model.ep_info_buffer is not None
    time_elapsed = max((time.time_ns() - model.start_time) / 1e9, sys.float_info.epsilon)
    model.logger.record("time/episodes", model._episode_num, exclude="tensorboard")
    if len(model.ep_info_buffer) > 0 and len(model.ep_info_buffer[0]) > 0:
        model.logger.record("rollout/ep_rew_mean", safe_mean([ep_info["r"] for ep_info in model.ep_info_buffer]))
        model.logger.record("rollout/ep_len_mean", safe_mean([ep_info["l"] for ep_info in model.ep_info_buffer]))
    model.logger.record("time/fps", int((model.num_timesteps - model._num_timesteps_at_start) / time_elapsed))
    model.logger.record("time/time_elapsed", int(time_elapsed), exclude="tensorboard")
    model.logger.record("time/total_timesteps", model.num_timesteps, exclude="tensorboard")
    model.logger.dump(step=model.num_timesteps)

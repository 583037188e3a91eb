"""DVRL's rollout storage: the last ``M`` rollouts with everything needed to recompute the belief over them."""

from collections.abc import Iterator
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces

from sb3_bayes.dvrl.policies import Belief, FilterNoise


class FilterInputs(NamedTuple):
    """The inputs of the filter steps of one rollout (time-major, ``[n_steps, n_envs, ...]``)."""

    observations: th.Tensor  # observation o_t as the env gave it (uint8 images stay uint8)
    episode_starts: th.Tensor  # 1.0 where o_t starts an episode (the belief is reset before it)
    uniforms: th.Tensor  # [n_steps, n_envs] resampling offsets used at step t
    normals: th.Tensor  # [n_steps, n_envs, K, Z] latent noise used at step t
    actions: th.Tensor  # action taken after o_t (the next step's previous action)


class DVRLRolloutBuffer:
    """
    A ring of up to ``n_rollouts`` (``multiplier_backprop_length``) rollouts of ``n_steps`` vectorised steps: the
    rollouts since the window started (``sliding=False``, the original's schedule: a new window every ``n_rollouts``
    rollouts, so it holds 1, 2, ..., ``n_rollouts`` of them in turn) or always the last ``n_rollouts``
    (``sliding=True``).

    Per step it keeps the inputs of the filter step (observation, episode start, the random numbers it used) and the
    action, reward and value; per rollout the detached belief before its first step. At update time DVRL replays
    the filter from the oldest stored belief over the window (section "BPTT" of the design: the original kept
    autograd graphs across optimiser steps; recomputing from stored inputs and noise gives the same belief without
    them) and computes the A2C loss on the newest rollout.

    :param n_steps: Steps per rollout.
    :param n_rollouts: Rollouts kept at most (the backpropagation window is up to ``n_steps * n_rollouts`` steps).
    :param observation_space: Observation space (the buffer keeps its dtype, e.g. uint8 frames).
    :param action_space: Action space.
    :param n_envs: Number of environments.
    :param n_particles: Particles per environment.
    :param h_dim: Size of h.
    :param z_dim: Size of z (0 for the RNN baseline).
    :param action_input_dim: Size of the encoded previous action.
    :param device: Device of the stored tensors.
    :param gamma: Discount factor of the n-step returns.
    :param sliding: Whether the window slides (always the last ``n_rollouts``) or restarts when full.
    """

    #: The tensors of the ring (what :meth:`state_dict` saves, with the ring's position).
    STORAGE: ClassVar[tuple[str, ...]] = (
        "observations",
        "episode_starts",
        "uniforms",
        "normals",
        "actions",
        "rewards",
        "values",
        "returns",
        "start_h",
        "start_z",
        "start_log_weights",
        "start_prev_action",
    )

    def __init__(
        self,
        n_steps: int,
        n_rollouts: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        n_envs: int,
        n_particles: int,
        h_dim: int,
        z_dim: int,
        action_input_dim: int,
        device: th.device,
        gamma: float,
        sliding: bool = False,
    ) -> None:
        self.n_steps = n_steps
        self.n_rollouts = n_rollouts
        self.sliding = sliding
        self.n_envs = n_envs
        self.gamma = gamma
        self.device = device
        obs_shape = observation_space.shape or ()
        assert observation_space.dtype is not None
        obs_dtype = th.from_numpy(np.zeros(0, dtype=observation_space.dtype)).dtype
        action_shape = (1,) if isinstance(action_space, spaces.Discrete) else tuple(action_space.shape or ())
        m, t, b = n_rollouts, n_steps, n_envs
        self.observations = th.zeros(m, t, b, *obs_shape, dtype=obs_dtype, device=device)
        self.episode_starts = th.zeros(m, t, b, device=device)
        self.uniforms = th.zeros(m, t, b, device=device)
        self.normals = th.zeros(m, t, b, n_particles, z_dim, device=device)
        self.actions = th.zeros(m, t, b, *action_shape, device=device)
        self.rewards = th.zeros(t, b, device=device)
        self.values = th.zeros(t, b, device=device)
        self.returns = th.zeros(t, b, device=device)
        self.start_h = th.zeros(m, b, n_particles, h_dim, device=device)
        self.start_z = th.zeros(m, b, n_particles, z_dim, device=device)
        self.start_log_weights = th.zeros(m, b, n_particles, device=device)
        self.start_prev_action = th.zeros(m, b, action_input_dim, device=device)
        self.n_stored = 0  # rollouts in the ring (at most n_rollouts)
        self.newest = -1  # slot of the newest rollout
        self.pos = 0  # next step of the newest rollout

    def reset(self) -> None:
        """Forget every rollout (the next one starts a new window)."""
        self.n_stored = 0
        self.newest = -1
        self.pos = 0

    def state_dict(self) -> dict[str, Any]:
        """
        Everything the buffer holds, for a save that continues exactly: the next update replays the filter from rollouts
        collected before the save.

        :return: Copies of the tensors on the CPU, and the ring's position (``n_stored``, ``newest``, ``pos``).
        """
        state: dict[str, Any] = {name: getattr(self, name).to("cpu", copy=True) for name in self.STORAGE}
        state.update(n_stored=self.n_stored, newest=self.newest, pos=self.pos)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """
        Put back a :meth:`state_dict`, if it was taken from a buffer of the same shapes.

        :param state: The saved state.
        :return: False (the buffer left as it is) when a shape or dtype differs (other ``n_envs``, ``n_steps``,
            ``n_rollouts``, particles, ...).
        """
        if any(
            state[name].shape != getattr(self, name).shape or state[name].dtype != getattr(self, name).dtype
            for name in self.STORAGE
        ):
            return False
        for name in self.STORAGE:
            getattr(self, name).copy_(state[name])
        self.n_stored, self.newest, self.pos = state["n_stored"], state["newest"], state["pos"]
        return True

    def start_rollout(self, belief: Belief) -> None:
        """
        Open a new rollout, keeping the belief before its first step. When the ring is full, a sliding window
        overwrites its oldest rollout; otherwise a new window starts with this rollout (its stored belief, detached,
        is where the gradient stops).

        :param belief: The belief before the first filter step of the rollout (stored detached).
        """
        if not self.sliding and self.n_stored == self.n_rollouts:
            self.n_stored = 0
        self.newest = (self.newest + 1) % self.n_rollouts
        self.n_stored = min(self.n_stored + 1, self.n_rollouts)
        self.pos = 0
        s = self.newest
        self.start_h[s] = belief.h.detach()
        self.start_z[s] = belief.z.detach()
        self.start_log_weights[s] = belief.log_weights.detach()
        self.start_prev_action[s] = belief.prev_action.detach()

    def add(
        self,
        obs: th.Tensor,
        episode_starts: th.Tensor,
        noise: FilterNoise,
        actions: th.Tensor,
        rewards: np.ndarray,
        values: th.Tensor,
    ) -> None:
        """
        Store one vectorised step of the newest rollout.

        :param obs: Observations ``o_t`` (as given by the env).
        :param episode_starts: ``[n_envs]`` episode starts of ``o_t``.
        :param noise: The random numbers of the filter step that consumed ``o_t``.
        :param actions: Actions taken after ``o_t``.
        :param rewards: Rewards received (time-limit bootstrap already added).
        :param values: Critic values of the belief (for logging the explained variance).
        """
        s, t = self.newest, self.pos
        self.observations[s, t] = obs
        self.episode_starts[s, t] = episode_starts
        self.uniforms[s, t] = noise.uniforms
        self.normals[s, t] = noise.normals
        self.actions[s, t] = actions.reshape(self.actions.shape[2:])
        self.rewards[t] = th.as_tensor(rewards, dtype=th.float32, device=self.device)
        self.values[t] = values
        self.pos += 1

    def compute_returns(self, last_values: th.Tensor, dones: np.ndarray) -> None:
        """
        Plain n-step returns of the newest rollout (the original's A2C; no GAE): ``R_t = r_t + gamma (1 - d_t)
        R_{t+1}``, bootstrapped with the critic's value of the belief after the last step.

        :param last_values: ``[n_envs]`` values of the belief after the last observation.
        :param dones: ``[n_envs]`` episode ends of the last step.
        """
        next_return = last_values.flatten()
        next_non_terminal = 1.0 - th.as_tensor(dones, dtype=th.float32, device=self.device)
        for t in reversed(range(self.n_steps)):
            self.returns[t] = self.rewards[t] + self.gamma * next_non_terminal * next_return
            next_return = self.returns[t]
            next_non_terminal = 1.0 - self.episode_starts[self.newest, t]

    def window(self) -> Iterator[tuple[bool, FilterInputs]]:
        """
        The stored rollouts from oldest to newest.

        :return: ``(is_newest, inputs)`` per rollout.
        """
        for i in range(self.n_stored):
            s = (self.newest - self.n_stored + 1 + i) % self.n_rollouts
            yield s == self.newest, FilterInputs(
                self.observations[s], self.episode_starts[s], self.uniforms[s], self.normals[s], self.actions[s]
            )

    def window_start_belief(self) -> Belief:
        """The detached belief before the first step of the oldest stored rollout."""
        s = (self.newest - self.n_stored + 1) % self.n_rollouts
        return Belief(self.start_h[s], self.start_z[s], self.start_log_weights[s], self.start_prev_action[s])

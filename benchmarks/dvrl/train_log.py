"""Training diagnostics of a run through rl-zoo3: the ``train/`` values of the algorithm's logger over training.

rl-zoo3 builds callbacks from the ``callback`` hyperparameter, so ``run_zoo.py`` adds this one with ``-params``
(nothing in the YAMLs changes). At the start of every rollout the logger still holds the values that the previous
update recorded (SB3 dumps them after the rollout, before the next update), so one record per ``every`` environment
steps is copied from there: for DVRL the ELBO, the explained variance, the particles' effective sample size and the
gradient norms before clipping; for RecurrentPPO the explained variance and the losses. With a ``Box`` action space
each record also describes the actions of the rollout just collected, as the policy sampled them (before the clip to
the bounds that the env receives): ``clipped_fraction``, the fraction of action components outside the bounds, and
``action_abs_mean``, their mean absolute value. A Gaussian whose mean has drifted beyond the bounds shows there: every
sample is clipped to the same corner, so the policy gradient no longer tells the actions apart. The actor itself is
described too, over the same rollout (a forward hook on the policy's ``action_net``, SB3's name for the actor head):
``actor_output_abs_mean``, the mean absolute raw output (before DVRL's ``bounded_action_mean`` squashing: a saturated
``tanh`` shows as large values), and ``actor_feature_norm``, the mean Euclidean norm of the features it acts on.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback

#: The logger keys that are kept (those an algorithm does not record are left out of its records).
KEYS = (
    "train/elbo",
    "train/explained_variance",
    "train/ess",
    "train/grad_norm",
    "train/grad_norm_a2c",
    "train/grad_norm_model",
    "train/value_loss",
    "train/policy_loss",
    "train/entropy_loss",
    "train/pre_activation_loss",
    "train/std",
)


class TrainLogCallback(BaseCallback):
    """
    Copy the last update's ``train/`` values every ``every`` environment steps; write them as JSON at the end.

    :param path: The JSON file (a list of ``{"step": ..., "elbo": ..., ...}``).
    :param every: Environment steps (all environments together) between two records.
    """

    def __init__(self, path: str, every: int = 2000) -> None:
        super().__init__()
        self.path = path
        self.every = every
        self.records: list[dict[str, float]] = []
        self._next = every
        self._collecting = False
        self._actor_sums = np.zeros(3)  # |output| summed, feature norms summed, rows seen
        self._actor_hook: th.utils.hooks.RemovableHandle | None = None

    def _on_training_start(self) -> None:
        action_net = getattr(self.model.policy, "action_net", None)
        if isinstance(action_net, th.nn.Module):
            self._actor_hook = action_net.register_forward_hook(self._record_actor)

    def _record_actor(self, module: th.nn.Module, inputs: tuple[th.Tensor, ...], output: th.Tensor) -> None:
        # Only the rollout's calls: the update replays the same network over the window, which is not what acted.
        if not self._collecting:
            return
        with th.no_grad():
            features, raw = inputs[0].reshape(-1, inputs[0].shape[-1]), output.reshape(-1, output.shape[-1])
            self._actor_sums += (float(raw.abs().mean(-1).sum()), float(features.norm(dim=-1).sum()), raw.shape[0])

    def _on_rollout_end(self) -> None:
        self._collecting = False

    def _on_rollout_start(self) -> None:
        record_now = self.num_timesteps >= self._next
        actor_sums, self._actor_sums = self._actor_sums, np.zeros(3)
        self._collecting = True
        if not record_now:
            return
        self._next = self.num_timesteps + self.every
        values = self.model.logger.name_to_value
        record = {key.removeprefix("train/"): float(values[key]) for key in KEYS if key in values}
        if getattr(self.model, "use_particle_filter", True) is False:
            record.pop("elbo", None)  # DVRL's RNN baseline logs a constant 0: it has no model
        record.update(self._action_statistics())
        if actor_sums[2] > 0:
            record["actor_output_abs_mean"] = float(actor_sums[0] / actor_sums[2])
            record["actor_feature_norm"] = float(actor_sums[1] / actor_sums[2])
        if record:
            self.records.append({"step": float(self.num_timesteps), **record})

    def _action_statistics(self) -> dict[str, float]:
        """Clipped fraction and mean absolute value of the last rollout's sampled actions (Box action spaces)."""
        action_space = self.model.action_space
        buffer = getattr(self.model, "rollout_buffer", None)
        if not isinstance(action_space, spaces.Box) or buffer is None:
            return {}
        actions = buffer.actions
        actions = actions.detach().cpu().numpy() if hasattr(actions, "detach") else np.asarray(actions)
        actions = actions.reshape(-1, *action_space.shape)
        outside = (actions < action_space.low) | (actions > action_space.high)
        return {"clipped_fraction": float(outside.mean()), "action_abs_mean": float(np.abs(actions).mean())}

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        if self._actor_hook is not None:  # the model outlives this callback: a later learn() must not feed it
            self._actor_hook.remove()
            self._actor_hook = None
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "w") as file:
            json.dump(self.records, file)

"""
Pictures of a PETS dynamics model: the ensemble's predictions along a real trajectory, against the real values.

Two kinds of prediction are drawn for every state dimension (and the reward, when the model learns it):

- open loop: every member starts at the trajectory's first state and is rolled forward on its own predicted means
  along the real actions, as the planner's particles are (without sampling): how far its imagination carries;
- one step: every member predicts from the real state at every step: how good a single transition is.

Each member's predicted mean is drawn with a band of +/- 2 of its predicted standard deviations.

Command line (collects one episode with the model's planner, or with random actions with ``--random-actions``)::

    python -m sb3_bayes.pets.model_pictures --model logs/pets/Pendulum-v1_1/Pendulum-v1.zip --env Pendulum-v1 \\
        --out picture.png
"""

import argparse
from collections.abc import Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch as th
from matplotlib.figure import Figure
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Figure as LoggedFigure

from sb3_bayes.common.rollout import final_observations
from sb3_bayes.common.validation import ParameterValidator
from sb3_bayes.pets.pets import PETS
from sb3_bayes.pets.policies import DynamicsEnsemble, PETSPolicy


class ModelPredictions(NamedTuple):
    """
    Predictions of every member along one trajectory of ``T`` steps, for the ``D`` predicted dimensions (the state,
    then the reward when it is learned).
    """

    real: np.ndarray  # [T, D], the real next states (and rewards)
    open_loop_mean: np.ndarray  # [members, T, D]
    open_loop_std: np.ndarray  # [members, T, D] (zeros for deterministic models)
    one_step_mean: np.ndarray  # [members, T, D]
    one_step_std: np.ndarray  # [members, T, D]
    labels: list[str]  # [D]


def _dynamics(model: PETS | PETSPolicy | DynamicsEnsemble) -> DynamicsEnsemble:
    if isinstance(model, PETS):
        return model.policy.dynamics
    if isinstance(model, PETSPolicy):
        return model.dynamics
    return model


def rollout_predictions(
    model: PETS | PETSPolicy | DynamicsEnsemble,
    observations: np.ndarray | th.Tensor,
    actions: np.ndarray | th.Tensor,
    rewards: np.ndarray | th.Tensor | None = None,
) -> ModelPredictions:
    """
    Roll the ensemble along a real trajectory's actions, open loop and one step at a time.

    :param model: A PETS model, its policy or its dynamics ensemble.
    :param observations: The real states ``[T + 1, obs_dim]`` (the first one and every next one).
    :param actions: The real actions ``[T, action_dim]``.
    :param rewards: The real rewards ``[T]``; needed when the model learns the reward.
    :return: The predictions and the real values.
    """
    dynamics = _dynamics(model)
    device = next(dynamics.parameters()).device
    obs = th.as_tensor(np.asarray(observations), dtype=th.float32, device=device)
    acts = th.as_tensor(np.asarray(actions), dtype=th.float32, device=device)
    check = ParameterValidator("rollout_predictions")
    check.relation("actions", tuple(acts.shape), obs.dim() == 2 and len(obs) == len(acts) + 1, "one action per transition")
    real = obs[1:]
    labels = [f"state[{i}]" for i in range(dynamics.obs_dim)]
    if dynamics.learn_reward:
        check.relation("rewards", rewards, rewards is not None and len(rewards) == len(acts), "one reward per transition")
        real = th.cat([real, th.as_tensor(np.asarray(rewards), dtype=th.float32, device=device).reshape(-1, 1)], dim=-1)
        labels.append("reward")

    def std_of(variance: th.Tensor | None, mean: th.Tensor) -> th.Tensor:
        return th.zeros_like(mean) if variance is None else variance.sqrt()

    was_training = dynamics.training
    dynamics.eval()
    with th.no_grad():
        # One step: every member predicts from every real state, in one batched pass.
        one_step = dynamics.predict(obs[:-1].unsqueeze(0), acts.unsqueeze(0))
        # Open loop: member b moves its own state by its own predicted mean (section 4.2 without the sampling).
        state = obs[:1].expand(dynamics.ensemble_size, 1, -1)
        means, stds = [], []
        for t in range(len(acts)):
            prediction = dynamics.predict(state, acts[t].expand(dynamics.ensemble_size, 1, -1))
            means.append(prediction.mean[:, 0])
            stds.append(std_of(prediction.variance, prediction.mean)[:, 0])
            state = prediction.mean[..., : dynamics.obs_dim]
    dynamics.train(was_training)
    return ModelPredictions(
        real=real.cpu().numpy(),
        open_loop_mean=th.stack(means, dim=1).cpu().numpy(),
        open_loop_std=th.stack(stds, dim=1).cpu().numpy(),
        one_step_mean=one_step.mean.cpu().numpy(),
        one_step_std=std_of(one_step.variance, one_step.mean).cpu().numpy(),
        labels=labels,
    )


#: The kinds of prediction ``plot_predictions`` can draw, one column each.
KINDS = ("open_loop", "one_step")


def plot_predictions(
    predictions: ModelPredictions, kinds: Sequence[str] = KINDS, title: str | None = None, max_members: int | None = None
) -> Figure:
    """
    One axis per predicted dimension and kind of prediction (rows: dimensions, columns: kinds): the real values in
    black, every member's mean in its own colour with a band of +/- 2 standard deviations.

    :param predictions: From ``rollout_predictions``.
    :param kinds: Columns, from ``KINDS``.
    :param title: Title of the figure.
    :param max_members: Draw at most this many members (None: all).
    :return: A matplotlib figure (not attached to pyplot: close it by dropping it, or log it with ``close=True``).
    """
    check = ParameterValidator("plot_predictions")
    for kind in kinds:
        check.choice("kinds", kind, KINDS)
    check.optional(check.integer, "max_members", max_members)
    n_dims = predictions.real.shape[1]
    steps = np.arange(1, predictions.real.shape[0] + 1)
    figure = Figure(figsize=(4.2 * len(kinds), 1.9 * n_dims + 0.6), layout="constrained")
    axes = figure.subplots(n_dims, len(kinds), squeeze=False, sharex=True)
    colours = [f"C{i % 10}" for i in range(10)]
    for column, kind in enumerate(kinds):
        mean = getattr(predictions, f"{kind}_mean")[:max_members]
        std = getattr(predictions, f"{kind}_std")[:max_members]
        for row in range(n_dims):
            axis = axes[row, column]
            for member in range(len(mean)):
                colour = colours[member % len(colours)]
                low, high = mean[member, :, row] - 2 * std[member, :, row], mean[member, :, row] + 2 * std[member, :, row]
                axis.fill_between(steps, low, high, color=colour, alpha=0.15, linewidth=0)
                axis.plot(steps, mean[member, :, row], color=colour, linewidth=0.9)
            axis.plot(steps, predictions.real[:, row], color="black", linewidth=1.4, label="real")
            # Open-loop predictions of a poor model can leave the real range by orders of magnitude: keep the real
            # values readable.
            spread = np.ptp(predictions.real[:, row]) or 1.0
            axis.set_ylim(predictions.real[:, row].min() - spread, predictions.real[:, row].max() + spread)
            axis.set_ylabel(predictions.labels[row])
            if row == 0:
                axis.set_title("open loop" if kind == "open_loop" else "one step")
        axes[-1, column].set_xlabel("step")
    if title:
        figure.suptitle(title)
    return figure


class ModelPictureCallback(BaseCallback):
    """
    Draws the model's predictions along the training's own trajectories (the first environment's) and writes the
    picture to TensorBoard every ``every_n_episodes`` episodes, before the model is trained on that episode (so the
    picture shows predictions on data the model has not seen). Uses SB3's ``Figure`` output, excluded from the text
    formats.

    :param every_n_episodes: Draw after every this many finished episodes of the first environment.
    :param key: Logger key of the picture.
    :param kinds: Columns of the picture, from ``KINDS``.
    :param verbose: Verbosity level.
    """

    def __init__(
        self, every_n_episodes: int = 10, key: str = "model/predictions", kinds: Sequence[str] = KINDS, verbose: int = 0
    ) -> None:
        super().__init__(verbose)
        check = ParameterValidator(type(self).__name__)
        self.every_n_episodes = check.integer("every_n_episodes", every_n_episodes)
        self.key = key
        self.kinds = list(kinds)
        for kind in self.kinds:
            check.choice("kinds", kind, KINDS)
        self._observations: list[np.ndarray] = []
        self._actions: list[np.ndarray] = []
        self._rewards: list[float] = []
        self.n_episodes = 0
        self.n_pictures = 0

    def _on_step(self) -> bool:
        obs, actions = self.locals["obs"], self.locals["actions"]
        rewards, dones, infos = self.locals["rewards"], self.locals["dones"], self.locals["infos"]
        if not self._observations:
            self._observations.append(np.array(obs[0], copy=True))
        next_obs, _ = final_observations(self.locals["new_obs"], dones, infos)
        self._actions.append(np.array(actions[0], copy=True))
        self._rewards.append(float(rewards[0]))
        self._observations.append(next_obs[0])
        if dones[0]:
            self.n_episodes += 1
            if self.n_episodes % self.every_n_episodes == 0:
                self.record_picture()
            self._observations, self._actions, self._rewards = [], [], []
        return True

    def record_picture(self) -> None:
        """Draw the trajectory collected so far and record it."""
        assert isinstance(self.model, PETS)
        predictions = rollout_predictions(
            self.model, np.stack(self._observations), np.stack(self._actions), np.asarray(self._rewards)
        )
        figure = plot_predictions(predictions, self.kinds, title=f"episode {self.n_episodes}")
        self.logger.record(self.key, LoggedFigure(figure, close=True), exclude=("stdout", "log", "json", "csv"))
        self.n_pictures += 1


def collect_episode(
    model: PETS, env: gym.Env, random_actions: bool = False, max_steps: int | None = None, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    One real episode: with the model's planner (``model.predict``), or uniformly random actions.

    :param model: The PETS model.
    :param env: A (non-vectorised) environment.
    :param random_actions: Whether to act at random.
    :param max_steps: Stop after this many steps (None: at the episode's end).
    :param seed: Seed of the reset.
    :return: ``(observations [T + 1, obs_dim], actions [T, action_dim], rewards [T])``.
    """
    obs, _ = env.reset(seed=seed)
    observations: list[np.ndarray] = [obs]
    actions: list[np.ndarray] = []
    rewards: list[float] = []
    episode_start = np.array([True])
    while max_steps is None or len(actions) < max_steps:
        if random_actions:
            action = env.action_space.sample()
        else:
            action, _ = model.predict(obs[None], episode_start=episode_start)
            action = action[0]
        episode_start = np.array([False])
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        actions.append(np.asarray(action))
        rewards.append(float(reward))
        if terminated or truncated:
            break
    return np.stack(observations), np.stack(actions), np.asarray(rewards)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: draw a saved PETS model's predictions along one real episode into a picture file."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="path of a saved PETS model (.zip)")
    parser.add_argument("--env", required=True, help="environment id, e.g. Pendulum-v1")
    parser.add_argument("--out", required=True, help="picture file (.png, .svg, .pdf)")
    parser.add_argument("--random-actions", action="store_true", help="act at random instead of with the planner")
    parser.add_argument("--steps", type=int, default=None, help="at most this many steps (default: the whole episode)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episode")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, help="columns of the picture")
    parser.add_argument("--env-kwargs", type=str, default="{}", help="env kwargs as a Python dict literal")
    args = parser.parse_args(argv)
    import ast

    env_kwargs: dict[str, Any] = ast.literal_eval(args.env_kwargs)
    env = gym.make(args.env, **env_kwargs)
    model = PETS.load(args.model, device="cpu")
    model.set_random_seed(args.seed)
    observations, actions, rewards = collect_episode(model, env, args.random_actions, args.steps, args.seed)
    predictions = rollout_predictions(model, observations, actions, rewards)
    how = "random actions" if args.random_actions else "the model's planner"
    title = f"{args.env}: {len(actions)} steps with {how}, return {rewards.sum():.0f}"
    plot_predictions(predictions, args.kinds, title=title).savefig(args.out, dpi=80)
    print(f"Wrote {args.out} ({title})")


if __name__ == "__main__":
    main()

"""
Sampling-based trajectory optimisers for model-predictive control, batched over environments.

Both optimisers search over open-loop action sequences ``[horizon, action_dim]`` inside box bounds, for ``n_envs``
independent problems at once, and maximise an objective that maps candidates ``[n_envs, popsize, horizon, action_dim]``
to values ``[n_envs, popsize]``. Nothing inside the loops synchronises with the host.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch as th

from sb3_bayes.common.validation import ParameterValidator

Objective = Callable[[th.Tensor], th.Tensor]


def truncated_standard_normal(shape: tuple[int, ...], device: th.device, bound: float = 2.0) -> th.Tensor:
    """
    Standard normal samples truncated to ``[-bound, bound]`` (the original draws from ``truncnorm(-2, 2)``).

    :param shape: Output shape.
    :param device: Output device.
    :param bound: Truncation in standard deviations.
    :return: Samples, float32.
    """
    samples = th.empty(shape, device=device)
    return th.nn.init.trunc_normal_(samples, mean=0.0, std=1.0, a=-bound, b=bound)


class TrajectoryOptimizer(ABC):
    """
    Base class: box bounds and the action-sequence shape.

    :param lower_bound: Lowest action, ``[action_dim]``.
    :param upper_bound: Highest action, ``[action_dim]``.
    :param horizon: Planning horizon.
    :param popsize: Candidates evaluated per iteration and environment.
    """

    def __init__(self, lower_bound: th.Tensor, upper_bound: th.Tensor, horizon: int, popsize: int) -> None:
        check = ParameterValidator(type(self).__name__)
        check.integer("horizon", horizon)
        check.integer("popsize", popsize)
        self.lower_bound = lower_bound
        self.upper_bound = upper_bound
        self.horizon = horizon
        self.popsize = popsize

    def initial_solution(self, n_envs: int) -> th.Tensor:
        """The midpoint of the bounds for every step: ``[n_envs, horizon, action_dim]``."""
        midpoint = (self.lower_bound + self.upper_bound) / 2
        return midpoint.expand(n_envs, self.horizon, -1).clone()

    def shift(self, solution: th.Tensor) -> th.Tensor:
        """
        Warm start for the next control step: drop the executed first action and append the midpoint.

        :param solution: ``[n_envs, horizon, action_dim]``.
        :return: Same shape.
        """
        midpoint = ((self.lower_bound + self.upper_bound) / 2).expand(solution.shape[0], 1, -1)
        return th.cat([solution[:, 1:], midpoint], dim=1)

    @abstractmethod
    def optimize(self, objective: Objective, initial_solution: th.Tensor) -> th.Tensor:
        """
        :param objective: Maps candidates ``[n_envs, popsize, horizon, action_dim]`` to values ``[n_envs, popsize]``.
        :param initial_solution: Warm start ``[n_envs, horizon, action_dim]``.
        :return: The solution, ``[n_envs, horizon, action_dim]``.
        """


class CEMOptimizer(TrajectoryOptimizer):
    """
    The cross-entropy method as in PETS (Chua et al., 2018, section 5; Botev et al., 2013).

    Each iteration clamps the variance so that two standard deviations stay inside the bounds, draws candidates from a
    normal truncated at two standard deviations, refits mean and variance to the ``num_elites`` best with smoothing
    ``alpha``, and stops (per environment) once the largest variance falls below ``epsilon``. It returns the final
    mean, not the best sample.

    :param lower_bound: Lowest action, ``[action_dim]``.
    :param upper_bound: Highest action, ``[action_dim]``.
    :param horizon: Planning horizon.
    :param popsize: Candidates per iteration.
    :param num_elites: Candidates the distribution is refit to.
    :param max_iters: Maximum iterations.
    :param alpha: Weight of the old distribution in the update.
    :param epsilon: Variance threshold of the early stop.
    """

    def __init__(
        self,
        lower_bound: th.Tensor,
        upper_bound: th.Tensor,
        horizon: int,
        popsize: int = 400,
        num_elites: int = 40,
        max_iters: int = 5,
        alpha: float = 0.1,
        epsilon: float = 1e-3,
    ) -> None:
        super().__init__(lower_bound, upper_bound, horizon, popsize)
        check = ParameterValidator(type(self).__name__)
        check.integer("num_elites", num_elites, maximum=popsize)
        check.integer("max_iters", max_iters)
        check.real("alpha", alpha, low=0.0, high=1.0, high_open=True)
        check.non_negative("epsilon", epsilon)
        self.num_elites = num_elites
        self.max_iters = max_iters
        self.alpha = alpha
        self.epsilon = epsilon

    def initial_variance(self, n_envs: int) -> th.Tensor:
        """``(upper - lower)^2 / 16`` for every step: ``[n_envs, horizon, action_dim]``."""
        variance = (self.upper_bound - self.lower_bound).pow(2) / 16
        return variance.expand(n_envs, self.horizon, -1).clone()

    def optimize(self, objective: Objective, initial_solution: th.Tensor) -> th.Tensor:
        mean = initial_solution
        n_envs = mean.shape[0]
        variance = self.initial_variance(n_envs)
        # Per-environment early stop without a host sync: a converged environment's distribution is frozen.
        active = th.ones(n_envs, 1, 1, dtype=th.bool, device=mean.device)
        for _ in range(self.max_iters):
            to_lower = mean - self.lower_bound
            to_upper = self.upper_bound - mean
            constrained_variance = th.minimum(th.minimum((to_lower / 2).pow(2), (to_upper / 2).pow(2)), variance)
            noise = truncated_standard_normal((n_envs, self.popsize, *mean.shape[1:]), mean.device)
            candidates = mean.unsqueeze(1) + noise * constrained_variance.sqrt().unsqueeze(1)
            values = objective(candidates)
            elite_idx = values.topk(self.num_elites, dim=1).indices
            elites = candidates.gather(1, elite_idx[:, :, None, None].expand(-1, -1, *mean.shape[1:]))
            new_mean = self.alpha * mean + (1 - self.alpha) * elites.mean(dim=1)
            new_variance = self.alpha * variance + (1 - self.alpha) * elites.var(dim=1, unbiased=False)
            mean = th.where(active, new_mean, mean)
            variance = th.where(active, new_variance, variance)
            active = active & (variance.amax(dim=(1, 2), keepdim=True) > self.epsilon)
        return mean


class RandomShootingOptimizer(TrajectoryOptimizer):
    """
    Random shooting (Nagabandi et al., 2018): ``popsize`` uniform action sequences, the best one wins.

    :param lower_bound: Lowest action, ``[action_dim]``.
    :param upper_bound: Highest action, ``[action_dim]``.
    :param horizon: Planning horizon.
    :param popsize: Number of sequences.
    """

    def optimize(self, objective: Objective, initial_solution: th.Tensor) -> th.Tensor:
        n_envs = initial_solution.shape[0]
        uniform = th.rand((n_envs, self.popsize, *initial_solution.shape[1:]), device=initial_solution.device)
        candidates = self.lower_bound + uniform * (self.upper_bound - self.lower_bound)
        best = objective(candidates).argmax(dim=1)
        return candidates[th.arange(n_envs, device=best.device), best]

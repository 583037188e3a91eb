"""
Sampling-based trajectory optimisers for model-predictive control, batched over environments.

The optimisers (CEM, iCEM, random shooting) search over open-loop action sequences ``[horizon, action_dim]`` inside box
bounds, for ``n_envs`` independent problems at once, and maximise an objective that maps candidates
``[n_envs, popsize, horizon, action_dim]`` to values ``[n_envs, popsize]``. Nothing inside the loops synchronises
with the host.
"""

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import NamedTuple

import torch as th

from sb3_bayes.common.validation import ParameterValidator

Objective = Callable[[th.Tensor], th.Tensor]
#: What ``ICEMOptimizer`` executes: the first action of the best sequence found (the original's) or of the final mean.
ICEM_EXECUTE = ("best", "mean")


class Solution(NamedTuple):
    """
    The outcome of one optimisation, batched over environments.

    ``plan`` is the sequence whose first action is executed; ``mean`` the final mean of the sampling distribution (the
    warm start of the next step, once shifted); ``std`` its final standard deviation (None for random shooting);
    ``elite_return`` the mean objective of the last iteration's elites (random shooting: of the best candidate);
    ``elites`` the sequences carried to the next step (iCEM's kept elites, ``[n_envs, 0, horizon, action_dim]`` for
    the others).
    """

    plan: th.Tensor  # [n_envs, horizon, action_dim]
    mean: th.Tensor  # [n_envs, horizon, action_dim]
    std: th.Tensor | None  # [n_envs, horizon, action_dim]
    elite_return: th.Tensor  # [n_envs]
    elites: th.Tensor  # [n_envs, n_kept, horizon, action_dim]


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


def colored_noise(beta: float, shape: tuple[int, ...], length: int, device: th.device) -> th.Tensor:
    """
    Gaussian noise with a power-law spectrum ``S(f) ~ f^-beta`` along the last axis, unit variance per sample.

    iCEM (Pinneri et al., 2020, section 3.1) samples action sequences from such noise: ``beta = 0`` is white noise, and
    larger exponents put more power in low frequencies, i.e. smoother, more correlated sequences. The method is Timmer
    and Koenig's (1995): random Fourier coefficients with standard deviation ``f^(-beta/2)``, transformed back. The DC
    component has no frequency; it gets the lowest non-zero one, ``1 / length``.

    :param beta: Spectral exponent, ``>= 0``.
    :param shape: Leading shape (one independent series per entry).
    :param length: Length of every series (the planning horizon).
    :param device: Output device.
    :return: Noise ``[*shape, length]``, float32.
    """
    frequencies = th.fft.rfftfreq(length, device=device)
    frequencies[0] = 1.0 / length
    scale = frequencies.pow(-beta / 2)
    real = th.randn(*shape, len(frequencies), device=device) * scale
    imaginary = th.randn(*shape, len(frequencies), device=device) * scale
    # The coefficients at f = 0 and (for an even length) f = 1/2 are real for a real signal; doubling their variance
    # makes beta = 0 exactly white noise (the DFT of white noise has twice the variance there in its real part).
    has_nyquist = length % 2 == 0
    real_only = [0, len(frequencies) - 1] if has_nyquist else [0]
    imaginary[..., real_only] = 0.0
    real[..., real_only] *= math.sqrt(2.0)
    noise = th.fft.irfft(th.complex(real, imaginary), n=length)
    # Exact standard deviation of every sample of the inverse transform: sum of the coefficients' variances, the
    # complex pairs counted twice (the conjugate half of the spectrum), over length^2.
    pair = th.ones_like(scale) * 2.0
    pair[real_only] = 1.0
    variance = (pair * 2.0 * scale.pow(2)).sum() / length**2
    return noise / variance.sqrt()


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

    def n_kept_elites(self) -> int:
        """Sequences carried from one control step to the next (iCEM's shifted elites; none for the others)."""
        return 0

    def no_elites(self, n_envs: int) -> th.Tensor:
        """An empty set of carried sequences, ``[n_envs, 0, horizon, action_dim]``."""
        return self.lower_bound.new_zeros(n_envs, 0, self.horizon, self.lower_bound.shape[0])

    def shift_elites(self, elites: th.Tensor) -> th.Tensor:
        """
        Carried sequences for the next control step (iCEM overrides this; the others carry none).

        :param elites: ``[n_envs, n_kept, horizon, action_dim]``.
        :return: Same shape.
        """
        return elites

    @abstractmethod
    def solve(self, objective: Objective, initial_solution: th.Tensor, elites: th.Tensor | None = None) -> Solution:
        """
        :param objective: Maps candidates ``[n_envs, n, horizon, action_dim]`` to values ``[n_envs, n]``.
        :param initial_solution: Warm start ``[n_envs, horizon, action_dim]``.
        :param elites: Sequences carried from the previous step ``[n_envs, n_kept_elites(), horizon, action_dim]``
            (iCEM only; None: none).
        :return: The solution and the statistics of the search.
        """

    def optimize(self, objective: Objective, initial_solution: th.Tensor) -> th.Tensor:
        """
        :param objective: Maps candidates ``[n_envs, n, horizon, action_dim]`` to values ``[n_envs, n]``.
        :param initial_solution: Warm start ``[n_envs, horizon, action_dim]``.
        :return: The sequence to execute the first action of, ``[n_envs, horizon, action_dim]``.
        """
        return self.solve(objective, initial_solution).plan


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

    def refit(
        self, mean: th.Tensor, variance: th.Tensor, candidates: th.Tensor, values: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """
        One update of the sampling distribution: the ``num_elites`` best candidates, and mean and variance refit to
        them with smoothing ``alpha`` (shared by CEM and iCEM).

        :param mean: ``[n_envs, horizon, action_dim]``.
        :param variance: Same shape.
        :param candidates: ``[n_envs, n, horizon, action_dim]``.
        :param values: ``[n_envs, n]``.
        :return: ``(new mean, new variance, elites [n_envs, num_elites, horizon, action_dim] best first, their
            values [n_envs, num_elites])``.
        """
        elite_values, elite_idx = values.topk(self.num_elites, dim=1)
        elites = candidates.gather(1, elite_idx[:, :, None, None].expand(-1, -1, *mean.shape[1:]))
        new_mean = self.alpha * mean + (1 - self.alpha) * elites.mean(dim=1)
        new_variance = self.alpha * variance + (1 - self.alpha) * elites.var(dim=1, unbiased=False)
        return new_mean, new_variance, elites, elite_values

    def solve(self, objective: Objective, initial_solution: th.Tensor, elites: th.Tensor | None = None) -> Solution:
        mean = initial_solution
        n_envs = mean.shape[0]
        variance = self.initial_variance(n_envs)
        elite_return = th.zeros(n_envs, device=mean.device)
        # Per-environment early stop without a host sync: a converged environment's distribution is frozen.
        active = th.ones(n_envs, 1, 1, dtype=th.bool, device=mean.device)
        for _ in range(self.max_iters):
            to_lower = mean - self.lower_bound
            to_upper = self.upper_bound - mean
            constrained_variance = th.minimum(th.minimum((to_lower / 2).pow(2), (to_upper / 2).pow(2)), variance)
            noise = truncated_standard_normal((n_envs, self.popsize, *mean.shape[1:]), mean.device)
            candidates = mean.unsqueeze(1) + noise * constrained_variance.sqrt().unsqueeze(1)
            new_mean, new_variance, _, elite_values = self.refit(mean, variance, candidates, objective(candidates))
            mean = th.where(active, new_mean, mean)
            variance = th.where(active, new_variance, variance)
            elite_return = th.where(active[:, 0, 0], elite_values.mean(dim=1), elite_return)
            active = active & (variance.amax(dim=(1, 2), keepdim=True) > self.epsilon)
        return Solution(mean, mean, variance.sqrt(), elite_return, self.no_elites(n_envs))


class ICEMOptimizer(CEMOptimizer):
    """
    The improved cross-entropy method, iCEM (Pinneri et al., "Sample-efficient Cross-Entropy Method for Real-time
    Planning", CoRL 2020, Algorithm 1), a CEM whose

    - candidates are coloured noise (section 3.1): ``clip(mean + std * noise)`` with a power-law spectrum of exponent
      ``noise_beta`` along the horizon (``beta = 0`` is the CEM's white noise, without the truncation);
    - population shrinks over the iterations (section 3.2): ``max(ceil(popsize * population_decay^-i), 2 num_elites)``
      candidates at iteration ``i``;
    - elites are reused (section 3.3): the best ``ceil(keep_elites_frac * num_elites)`` elites of one iteration join
      the next one's candidates; those of the last iteration, shifted by one step (a fresh last action drawn from the
      initial distribution), join the first iteration of the next control step (``solve(..., elites)``);
    - final mean joins the candidates of the last iteration (section 3.4);
    - executed action is the best sequence's first (section 3.4, ``execute="best"``), or the final mean's.

    Mean and variance are refit with smoothing ``alpha`` as in ``CEMOptimizer``; there is no early stop.

    :param lower_bound: Lowest action, ``[action_dim]``.
    :param upper_bound: Highest action, ``[action_dim]``.
    :param horizon: Planning horizon.
    :param popsize: Candidates of the first iteration.
    :param num_elites: Candidates the distribution is refit to.
    :param max_iters: Iterations.
    :param alpha: Weight of the old distribution in the update (the paper's momentum).
    :param noise_beta: Exponent of the noise's power spectrum, ``>= 0``.
    :param population_decay: Factor by which the population shrinks per iteration, ``>= 1``.
    :param keep_elites_frac: Fraction of the elites kept across iterations and steps, in ``[0, 1]``.
    :param execute: ``"best"`` or ``"mean"``.
    """

    def __init__(
        self,
        lower_bound: th.Tensor,
        upper_bound: th.Tensor,
        horizon: int,
        popsize: int = 400,
        num_elites: int = 40,
        max_iters: int = 3,
        alpha: float = 0.1,
        noise_beta: float = 2.0,
        population_decay: float = 1.25,
        keep_elites_frac: float = 0.3,
        execute: str = "best",
    ) -> None:
        super().__init__(lower_bound, upper_bound, horizon, popsize, num_elites, max_iters, alpha, epsilon=0.0)
        check = ParameterValidator(type(self).__name__)
        self.noise_beta = check.non_negative("noise_beta", noise_beta)
        self.population_decay = check.real("population_decay", population_decay, low=1.0)
        self.keep_elites_frac = check.fraction("keep_elites_frac", keep_elites_frac, zero=True)
        self.execute = check.choice("execute", execute, ICEM_EXECUTE)

    def population_size(self, iteration: int) -> int:
        """Fresh candidates at ``iteration`` (from 0): ``max(ceil(popsize * decay^-i), 2 num_elites)``."""
        return max(math.ceil(self.popsize * self.population_decay**-iteration), 2 * self.num_elites)

    def n_kept_elites(self) -> int:
        return math.ceil(self.keep_elites_frac * self.num_elites)

    def shift_elites(self, elites: th.Tensor) -> th.Tensor:
        # Algorithm 1, line 8: the kept elites move one step forward; the new last action is drawn from the initial
        # distribution (midpoint, (upper - lower) / 4), clipped, as the original draws it around the shifted mean.
        if elites.shape[1] == 0:
            return elites
        midpoint = (self.lower_bound + self.upper_bound) / 2
        std = (self.upper_bound - self.lower_bound) / 4
        last = midpoint + std * th.randn(*elites.shape[:2], 1, elites.shape[-1], device=elites.device)
        last = th.minimum(th.maximum(last, self.lower_bound), self.upper_bound)
        return th.cat([elites[:, :, 1:], last], dim=2)

    def sample(self, mean: th.Tensor, variance: th.Tensor, n: int) -> th.Tensor:
        """``n`` coloured-noise candidates per environment, clipped to the bounds: ``[n_envs, n, horizon, action_dim]``."""
        n_envs, horizon, action_dim = mean.shape
        # The spectrum runs along the horizon, one independent series per action dimension.
        noise = colored_noise(self.noise_beta, (n_envs, n, action_dim), horizon, mean.device).transpose(2, 3)
        candidates = mean.unsqueeze(1) + noise * variance.sqrt().unsqueeze(1)
        return th.minimum(th.maximum(candidates, self.lower_bound), self.upper_bound)

    def solve(self, objective: Objective, initial_solution: th.Tensor, elites: th.Tensor | None = None) -> Solution:
        mean = initial_solution
        n_envs = mean.shape[0]
        variance = self.initial_variance(n_envs)
        kept = self.no_elites(n_envs) if elites is None else elites
        best = mean
        best_value = th.full((n_envs,), -math.inf, device=mean.device)
        elite_values = th.zeros(n_envs, self.num_elites, device=mean.device)
        for i in range(self.max_iters):
            parts = [self.sample(mean, variance, self.population_size(i)), kept]
            if i == self.max_iters - 1:
                parts.append(mean.unsqueeze(1))  # section 3.4: the mean is a candidate of the last iteration
            candidates = th.cat(parts, dim=1)
            mean, variance, iteration_elites, elite_values = self.refit(mean, variance, candidates, objective(candidates))
            kept = iteration_elites[:, : self.n_kept_elites()]
            improved = elite_values[:, 0] > best_value
            best = th.where(improved[:, None, None], iteration_elites[:, 0], best)
            best_value = th.where(improved, elite_values[:, 0], best_value)
        plan = best if self.execute == "best" else mean
        return Solution(plan, mean, variance.sqrt(), elite_values.mean(dim=1), kept)


class RandomShootingOptimizer(TrajectoryOptimizer):
    """
    Random shooting (Nagabandi et al., 2018): ``popsize`` uniform action sequences, the best one wins.

    :param lower_bound: Lowest action, ``[action_dim]``.
    :param upper_bound: Highest action, ``[action_dim]``.
    :param horizon: Planning horizon.
    :param popsize: Number of sequences.
    """

    def solve(self, objective: Objective, initial_solution: th.Tensor, elites: th.Tensor | None = None) -> Solution:
        n_envs = initial_solution.shape[0]
        uniform = th.rand((n_envs, self.popsize, *initial_solution.shape[1:]), device=initial_solution.device)
        candidates = self.lower_bound + uniform * (self.upper_bound - self.lower_bound)
        best_value, best = objective(candidates).max(dim=1)
        plan = candidates[th.arange(n_envs, device=best.device), best]
        return Solution(plan, plan, None, best_value, self.no_elites(n_envs))

"""Trajectory optimisers and particle propagation against closed forms and brute force."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from torch import nn

from sb3_bayes.common.propagation import ensemble_moments, moment_match, random_permutation_index
from sb3_bayes.common.trajectory_optimizers import CEMOptimizer, RandomShootingOptimizer, truncated_standard_normal
from sb3_bayes.common.validation import HyperparameterTypeError, HyperparameterValueError
from sb3_bayes.envs.known_rewards import KnownModelSpec
from sb3_bayes.pets.policies import DynamicsPrediction, PETSPolicy, PlannerSettings

# Variance of a standard normal truncated to [-2, 2]: 1 - 4 phi(2) / (2 Phi(2) - 1).
TRUNCATED_VARIANCE = 1 - 4 * np.exp(-2) / np.sqrt(2 * np.pi) / 0.9544997361036416


def test_truncated_normal_bounds_and_variance() -> None:
    th.manual_seed(0)
    samples = truncated_standard_normal((200_000,), th.device("cpu"))
    assert float(samples.abs().max()) <= 2.0
    assert float(samples.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(samples.var()) == pytest.approx(TRUNCATED_VARIANCE, rel=0.02)


def quadratic(targets: th.Tensor):
    """Objective maximised at `targets` ([n_envs, horizon, action_dim]); records every candidate it sees."""
    seen: list[th.Tensor] = []

    def objective(candidates: th.Tensor) -> th.Tensor:
        seen.append(candidates)
        return -(candidates - targets.unsqueeze(1)).pow(2).sum(dim=(2, 3))

    return objective, seen


def test_cem_finds_quadratic_optimum_inside_bounds_for_each_env() -> None:
    th.manual_seed(0)
    low, high = th.tensor([-1.0, -2.0]), th.tensor([1.0, 2.0])
    targets = th.tensor([[[0.3, -0.5]] * 3, [[-0.7, 1.5]] * 3])
    cem = CEMOptimizer(low, high, horizon=3, popsize=500, num_elites=50, max_iters=40, alpha=0.1, epsilon=1e-8)
    objective, seen = quadratic(targets)
    solution = cem.optimize(objective, cem.initial_solution(2))
    th.testing.assert_close(solution, targets, atol=0.05, rtol=0)
    # Candidates are truncated at two standard deviations of a variance clamped to the bounds: never outside.
    for candidates in seen:
        assert bool((candidates >= low).all()) and bool((candidates <= high).all())


def test_cem_optimum_outside_bounds_goes_to_the_bound() -> None:
    th.manual_seed(1)
    low, high = th.tensor([-1.0]), th.tensor([1.0])
    targets = th.full((1, 2, 1), 3.0)
    cem = CEMOptimizer(low, high, horizon=2, popsize=100, num_elites=10, max_iters=30, epsilon=1e-10)
    solution = cem.optimize(quadratic(targets)[0], cem.initial_solution(1))
    assert bool((solution <= 1.0).all()) and float(solution.min()) > 0.95


def test_cem_epsilon_stops_after_first_iteration() -> None:
    low, high = th.tensor([-1.0]), th.tensor([1.0])
    targets = th.full((2, 4, 1), 0.5)
    th.manual_seed(3)
    one_iteration = CEMOptimizer(low, high, 4, popsize=50, num_elites=5, max_iters=1).optimize(
        quadratic(targets)[0], th.zeros(2, 4, 1)
    )
    th.manual_seed(3)
    # epsilon above any variance: converged after the first update, later iterations leave the solution alone.
    stopped = CEMOptimizer(low, high, 4, popsize=50, num_elites=5, max_iters=5, epsilon=10.0).optimize(
        quadratic(targets)[0], th.zeros(2, 4, 1)
    )
    th.testing.assert_close(stopped, one_iteration)


def test_cem_warm_start_shift_and_validation() -> None:
    cem = CEMOptimizer(th.tensor([0.0]), th.tensor([2.0]), horizon=3, popsize=10, num_elites=2)
    solution = th.tensor([[[0.5], [1.5], [2.0]]])
    th.testing.assert_close(cem.shift(solution), th.tensor([[[1.5], [2.0], [1.0]]]))
    th.testing.assert_close(cem.initial_variance(1), th.full((1, 3, 1), 4.0 / 16))
    with pytest.raises(ValueError, match="num_elites"):
        CEMOptimizer(th.tensor([0.0]), th.tensor([1.0]), horizon=3, popsize=10, num_elites=11)


@pytest.mark.parametrize(
    "kwargs, error, parameter",
    [
        (dict(horizon=0), HyperparameterValueError, "horizon"),
        (dict(popsize="ten"), HyperparameterTypeError, "popsize"),
        (dict(num_elites=0), HyperparameterValueError, "num_elites"),
        (dict(max_iters=0), HyperparameterValueError, "max_iters"),
        (dict(alpha=1.0), HyperparameterValueError, "alpha"),
        (dict(epsilon=-1.0), HyperparameterValueError, "epsilon"),
    ],
)
def test_optimizer_arguments_are_checked(kwargs: dict, error: type, parameter: str) -> None:
    arguments = {"horizon": 3, "popsize": 10, "num_elites": 2, **kwargs}
    with pytest.raises(error, match=rf"^CEMOptimizer: {parameter} must be"):
        CEMOptimizer(th.tensor([0.0]), th.tensor([1.0]), **arguments)  # type: ignore[arg-type]
    if parameter in ("horizon", "popsize"):
        with pytest.raises(error, match=rf"^RandomShootingOptimizer: {parameter} must be"):
            RandomShootingOptimizer(th.tensor([0.0]), th.tensor([1.0]), arguments["horizon"], arguments["popsize"])


def test_random_shooting_returns_best_candidate() -> None:
    th.manual_seed(0)
    low, high = th.tensor([-1.0]), th.tensor([1.0])
    targets = th.full((3, 2, 1), 0.25)
    shooter = RandomShootingOptimizer(low, high, horizon=2, popsize=500)
    objective, seen = quadratic(targets)
    solution = shooter.optimize(objective, shooter.initial_solution(3))
    values = objective(seen[0])
    best = seen[0][th.arange(3), values.argmax(dim=1)]
    th.testing.assert_close(solution, best)
    assert bool((seen[0] >= low).all()) and bool((seen[0] <= high).all())


def test_ensemble_moments_law_of_total_variance() -> None:
    th.manual_seed(0)
    means, variances = th.randn(5, 7, 3), th.rand(5, 7, 3)
    mean, variance = ensemble_moments(means, variances)
    # Brute force: the mixture of the five Gaussians, moment by moment.
    second_moment = (variances + means.pow(2)).mean(dim=0)
    th.testing.assert_close(mean, means.mean(dim=0))
    th.testing.assert_close(variance, second_moment - mean.pow(2), atol=1e-5, rtol=1e-5)


def test_moment_match_and_permutations() -> None:
    th.manual_seed(0)
    particles = th.randn(4, 20_000, 2) * th.tensor([1.0, 3.0]) + th.tensor([2.0, -1.0])
    resampled = moment_match(particles)
    th.testing.assert_close(resampled.mean(dim=1), particles.mean(dim=1), atol=0.08, rtol=0)
    th.testing.assert_close(resampled.std(dim=1), particles.std(dim=1), atol=0.08, rtol=0)
    index = random_permutation_index(6, 10, th.device("cpu"))
    assert bool((index.sort(dim=1).values == th.arange(10)).all())


class OffsetEnsemble(nn.Module):
    """Deterministic members that move the state by a member-specific offset: s' = s + c_b."""

    def __init__(self, offsets: th.Tensor) -> None:
        super().__init__()
        self.register_buffer("offsets", offsets)
        self.obs_dim = 1
        self.ensemble_size = len(offsets)

    def predict(self, obs: th.Tensor, action: th.Tensor) -> DynamicsPrediction:
        mean = obs.expand(self.ensemble_size, -1, -1) + self.offsets[:, None, None]
        return DynamicsPrediction(mean, None, None)


def squared_state_reward(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
    return next_obs[..., 0].pow(2)


def never_terminates(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
    return th.zeros(next_obs.shape[:-1], dtype=th.bool, device=next_obs.device)


@pytest.mark.parametrize(
    "propagation, expected",
    [
        # With s_0 = 0, offsets of mean mu = 1 and population variance v = 2, and return sum_{t=1..4} s_t^2:
        ("E", 30.0),  # s_t = t mu                               -> sum t^2 mu^2
        ("TSinf", 90.0),  # s_t = t c_b, one member per particle -> sum t^2 (mu^2 + v)
        ("TS1", 50.0),  # a fresh member every step              -> sum (t^2 mu^2 + t v)
        ("DS", 50.0),  # N(mu, v) increments                     -> sum (t^2 mu^2 + t v)
        ("MM", 50.0),  # DS with refit particles: same moments
    ],
)
def test_propagation_particle_statistics_match_brute_force(propagation: str, expected: float) -> None:
    th.manual_seed(0)
    policy = PETSPolicy(
        spaces.Box(-np.inf, np.inf, (1,)),
        spaces.Box(-1.0, 1.0, (1,)),
        lambda _: 1e-3,
        net_arch=[8],
        reward_fn="Pendulum-v1",
        angle_dims=[],
        planner_settings=PlannerSettings(n_particles=1000, propagation=propagation),
    )
    policy.dynamics = OffsetEnsemble(th.tensor([-1.0, 0.0, 1.0, 2.0, 3.0]))  # type: ignore[assignment]
    policy.known_model = KnownModelSpec(squared_state_reward, never_terminates, {})
    returns = policy.evaluate_action_sequences(th.zeros(2, 1), th.zeros(2, 8, 4, 1))
    assert returns.shape == (2, 8)
    tolerance = 1e-4 if propagation in ("E", "TSinf") else 0.04
    assert float(returns.mean()) == pytest.approx(expected, rel=tolerance)


def test_terminated_particles_collect_no_reward() -> None:
    policy = PETSPolicy(
        spaces.Box(-np.inf, np.inf, (1,)),
        spaces.Box(-1.0, 1.0, (1,)),
        lambda _: 1e-3,
        net_arch=[8],
        reward_fn="Pendulum-v1",
        planner_settings=PlannerSettings(n_particles=5),
    )
    policy.dynamics = OffsetEnsemble(th.ones(5))  # type: ignore[assignment]

    def reward_one(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
        return th.ones(next_obs.shape[:-1])

    def terminate_past_two(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
        return next_obs[..., 0] >= 2.0

    policy.known_model = KnownModelSpec(reward_one, terminate_past_two, {})
    returns = policy.evaluate_action_sequences(th.zeros(1, 1), th.zeros(1, 3, 6, 1))
    # Rewards at s = 1 and at the terminating step s = 2, then nothing.
    th.testing.assert_close(returns, th.full((1, 3), 2.0))


def test_non_finite_returns_become_a_large_negative_value() -> None:
    policy = PETSPolicy(
        spaces.Box(-np.inf, np.inf, (1,)), spaces.Box(-1.0, 1.0, (1,)), lambda _: 1e-3, net_arch=[8], reward_fn="Pendulum-v1"
    )
    policy.dynamics = OffsetEnsemble(th.full((5,), float("nan")))  # type: ignore[assignment]
    policy.known_model = KnownModelSpec(squared_state_reward, never_terminates, {})
    returns = policy.evaluate_action_sequences(th.zeros(1, 1), th.zeros(1, 2, 3, 1))
    assert bool((returns == -1e6).all())


@pytest.mark.parametrize("propagation", ["E", "DS", "TS1", "TSinf", "MM"])
def test_first_step_shortcut_equals_plain_evaluation(propagation: str, monkeypatch) -> None:
    """Particles share their start state, so the first step is evaluated once per group: same numbers, less work."""
    th.manual_seed(0)
    policy = PETSPolicy(
        spaces.Box(-np.inf, np.inf, (3,)),
        spaces.Box(-2.0, 2.0, (1,)),
        lambda _: 1e-3,
        net_arch=[16],
        planner_settings=PlannerSettings(n_particles=10, propagation=propagation),
    )
    obs, candidates = th.randn(2, 3), th.rand(2, 8, 4, 1) * 4 - 2
    with th.no_grad():
        th.manual_seed(1)
        shortcut = policy.evaluate_action_sequences(obs, candidates)
        monkeypatch.setattr(policy, "_predict_first_step", lambda state, action, _: policy.dynamics.predict(state, action))
        th.manual_seed(1)
        plain = policy.evaluate_action_sequences(obs, candidates)
    th.testing.assert_close(shortcut, plain, rtol=1e-6, atol=1e-5)

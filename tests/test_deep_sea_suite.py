"""bsuite's DeepSea protocol (sb3_bayes.envs.deep_sea): the solved criterion and the scaling-exponent fit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sb3_bayes.envs.deep_sea import bsuite_criterion, bsuite_solved_at, bsuite_solved_episode, fit_scaling_exponent


@pytest.mark.parametrize(
    ("bad_flags", "expected"),
    [
        # Every episode bad: 1/1, 2/2, ... never below 0.9.
        ([True] * 50, None),
        ([], None),
        # A good first episode: 0 bad of 1 < 0.9 (bsuite's running fraction allows a lucky first episode).
        ([False], 1),
        # Bad, good: 1/2 = 0.5 < 0.9 at episode 2.
        ([True, False], 2),
        # Nine bad then one good: 9/10 = 0.9 is not below 0.9; 9 bad then two good: 9/11 = 0.818 at episode 11.
        ([True] * 9 + [False], None),
        ([True] * 9 + [False, False], 11),
        # 19 bad, then good: 19/20 = 0.95, 19/21 = 0.905, 19/22 = 0.864 -> episode 22.
        ([True] * 19 + [False] * 5, 22),
        # A good episode early and a long bad streak: solved at episode 2 (1/2), even though later fractions rise.
        ([True, False] + [True] * 100, 2),
    ],
)
def test_bsuite_solved_episode_by_hand(bad_flags: list[bool], expected: int | None) -> None:
    assert bsuite_solved_episode(bad_flags) == expected


def test_bsuite_solved_episode_threshold_and_min_episodes() -> None:
    flags = [True] * 4 + [False] * 6  # running bad fractions: 1, 1, 1, 1, 0.8, 0.667, 0.571, 0.5, 0.444, 0.4
    assert bsuite_solved_episode(flags, threshold=0.8) == 6  # 0.8 is not below 0.8 (bsuite's strict <)
    assert bsuite_solved_episode(flags, threshold=0.5) == 9
    assert bsuite_solved_episode([False] + flags, min_episodes=5) == 5  # 4 bad of 5 = 0.8 < 0.9
    assert bsuite_solved_episode(np.array(flags, dtype=bool)) == 5  # 4/5 = 0.8 < 0.9; arrays and 0/1 flags work
    assert bsuite_solved_episode([1, 1, 0]) == 3  # 2/3 < 0.9


def test_bsuite_criterion_of_the_stochastic_variant_is_stricter() -> None:
    """bsuite's deep_sea_stochastic analysis: bad fraction below 0.8, and no solve before episode 100."""
    assert bsuite_criterion(deterministic=True) == (0.9, 1)
    assert bsuite_criterion(deterministic=False) == (0.8, 100)
    # A lucky start (15 of the first 100 episodes not bad, then all bad) solves the deterministic criterion at once and
    # the stochastic one never: 85 bad of 100 is not below 0.8, and the fraction only grows afterwards.
    flags = [False] * 15 + [True] * 185
    assert bsuite_solved_episode(flags, *bsuite_criterion(True)) == 1
    assert bsuite_solved_episode(flags, *bsuite_criterion(False)) is None
    # 25 of the first 100 not bad: 75 % bad at episode 100 solves the stochastic criterion there, not before.
    assert bsuite_solved_episode([False] * 25 + [True] * 75, *bsuite_criterion(False)) == 100


@pytest.mark.parametrize("kwargs", [dict(threshold=0.0), dict(threshold=1.5), dict(min_episodes=0), dict(min_episodes=2.5)])
def test_bsuite_solved_episode_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        bsuite_solved_episode([True, False], **kwargs)


def test_fit_scaling_exponent_recovers_a_power_law() -> None:
    sizes = np.array([10, 20, 30, 40, 50], dtype=float)
    exponent, prefactor = fit_scaling_exponent(sizes, 3.0 * sizes**2.5)
    assert exponent == pytest.approx(2.5, abs=1e-10)
    assert prefactor == pytest.approx(3.0, rel=1e-9)
    # Repeated sizes (seeds) and multiplicative noise: the log-log least-squares slope.
    rng = np.random.default_rng(0)
    x = np.repeat(sizes, 3)
    y = 0.5 * x**2.0 * np.exp(rng.normal(0.0, 0.05, x.shape))
    assert fit_scaling_exponent(x, y)[0] == pytest.approx(2.0, abs=0.1)
    # 2^N is no power law: its log-log slope over 10..50 is far above any polynomial's here.
    assert fit_scaling_exponent(sizes, 2.0**sizes)[0] > 10 * math.log(2) * 2


@pytest.mark.parametrize(
    ("sizes", "episodes"), [([10, 10], [5, 6]), ([10], [5]), ([10, 20], [0, 6]), ([10, 20], [5]), ([-1, 2], [1, 2])]
)
def test_fit_scaling_exponent_rejects_unfittable_data(sizes: list[float], episodes: list[float]) -> None:
    with pytest.raises(ValueError):
        fit_scaling_exponent(sizes, episodes)


def test_bsuite_solved_at_is_the_test_of_one_episode() -> None:
    """A run that checks the criterion as it goes finds the episode bsuite_solved_episode finds."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        flags = rng.random(200) < rng.uniform(0.8, 1.0)
        n_bad, found = 0, None
        for episode, bad in enumerate(flags, start=1):
            n_bad += bool(bad)
            if found is None and bsuite_solved_at(n_bad, episode, 0.9, 5):
                found = episode
        assert found == bsuite_solved_episode(flags, 0.9, 5)
    assert not bsuite_solved_at(9, 10) and bsuite_solved_at(8, 10) and not bsuite_solved_at(0, 3, min_episodes=4)

"""Particle-filter building blocks against closed forms and brute-force references."""

import math

import numpy as np
import pytest
import torch as th

from sb3_bayes.common.particle_filter import (
    effective_sample_size,
    gather_particles,
    log_mean_exp,
    normalize_log_weights,
    normalized_weights,
    systematic_resample,
)


def test_normalized_weights_sum_to_one_and_are_stable() -> None:
    gen = th.Generator().manual_seed(0)
    log_w = th.randn(4, 3, 7, generator=gen, dtype=th.float64) * 5
    expected = th.exp(log_w) / th.exp(log_w).sum(-1, keepdim=True)
    assert th.allclose(normalized_weights(log_w), expected, rtol=1e-12, atol=0)
    assert th.allclose(normalize_log_weights(log_w).exp(), expected, rtol=1e-12, atol=0)
    # Shifting every log-weight by a constant (here beyond exp's float range) changes nothing.
    shifted = log_w + 1000.0
    assert th.allclose(normalized_weights(shifted), expected, rtol=1e-12, atol=0)
    assert th.allclose(normalized_weights(shifted.float()).sum(-1), th.ones(4, 3), atol=1e-6)


def test_log_mean_exp_matches_brute_force() -> None:
    gen = th.Generator().manual_seed(1)
    log_w = th.randn(5, 9, generator=gen, dtype=th.float64) * 3
    brute = th.tensor([math.log(sum(math.exp(v) for v in row) / 9) for row in log_w.tolist()], dtype=th.float64)
    assert th.allclose(log_mean_exp(log_w), brute, rtol=1e-12, atol=1e-12)
    # Large magnitudes stay finite where the brute force would overflow.
    assert th.allclose(log_mean_exp(log_w - 2000.0), brute - 2000.0, rtol=1e-12)


def test_effective_sample_size_bounds() -> None:
    assert th.allclose(effective_sample_size(th.zeros(3, 8)), th.full((3,), 8.0))
    degenerate = th.tensor([[0.0, -1e4, -1e4, -1e4]])
    assert th.allclose(effective_sample_size(degenerate), th.ones(1))


def test_systematic_resample_known_case() -> None:
    # Weights (1/2, 1/4, 1/4), u = 0.5: points 1/6, 1/2, 5/6 in the CDF (1/2, 3/4, 1) -> ancestors 0, 1, 2.
    log_w = th.tensor([[0.5, 0.25, 0.25]]).log()
    assert systematic_resample(log_w, th.tensor([0.5])).tolist() == [[0, 1, 2]]
    # u = 0.1: points 0.033, 0.367, 0.7 -> 0, 0, 1.
    assert systematic_resample(log_w, th.tensor([0.1])).tolist() == [[0, 0, 1]]
    # A dominant particle takes every slot; indices stay in range when rounding leaves the CDF just below one.
    log_w = th.tensor([[-1e3, 0.0, -1e3]])
    assert systematic_resample(log_w, th.tensor([0.999999])).tolist() == [[1, 1, 1]]


@pytest.mark.parametrize("n_particles", [3, 10])
def test_systematic_resample_is_unbiased(n_particles: int) -> None:
    """
    Over many draws the number of copies of particle k averages K w_k. For systematic resampling the count is
    floor(K w_k) plus a Bernoulli(frac(K w_k)) (the K points have spacing 1/K and a uniform offset), so its standard
    deviation is sqrt(f (1 - f)), f = frac(K w_k); the test allows 5 standard errors of the mean.
    """
    th.manual_seed(n_particles)
    gen = th.Generator().manual_seed(2)
    n_draws = 50_000
    weights = th.distributions.Dirichlet(th.ones(n_particles, dtype=th.float64)).sample(th.Size([1]))
    log_w = weights.log().expand(n_draws, n_particles)
    ancestors = systematic_resample(log_w, th.rand(n_draws, generator=gen, dtype=th.float64))
    counts = th.nn.functional.one_hot(ancestors, n_particles).sum(dim=1).double()  # [n_draws, K]
    expected = n_particles * weights[0]
    frac = expected - expected.floor()
    # Every draw gives floor or ceil of K w_k copies, and K copies in all.
    assert bool(((counts == expected.floor()) | (counts == expected.ceil())).all())
    assert bool((counts.sum(dim=1) == n_particles).all())
    tolerance = 5 * th.sqrt(frac * (1 - frac) / n_draws) + 1e-9
    assert bool(((counts.mean(dim=0) - expected).abs() <= tolerance).all()), (counts.mean(0), expected, tolerance)


def test_systematic_resample_batched_and_sorted() -> None:
    gen = th.Generator().manual_seed(3)
    log_w = th.randn(2, 3, 6, generator=gen)
    uniforms = th.rand(2, 3, generator=gen)
    ancestors = systematic_resample(log_w, uniforms)
    assert ancestors.shape == (2, 3, 6) and ancestors.dtype == th.int64
    assert bool((ancestors[..., 1:] >= ancestors[..., :-1]).all())
    for i in range(2):
        for j in range(3):
            assert th.equal(ancestors[i, j], systematic_resample(log_w[i, j : j + 1], uniforms[i, j : j + 1])[0])


def test_gather_particles_matches_loop() -> None:
    gen = th.Generator().manual_seed(4)
    particles = th.randn(3, 5, 2, 4, generator=gen)
    ancestors = th.randint(0, 5, (3, 5), generator=gen)
    gathered = gather_particles(particles, ancestors)
    expected = th.stack([particles[b, ancestors[b]] for b in range(3)])
    assert th.equal(gathered, expected)
    assert th.equal(gather_particles(particles[..., 0, 0], ancestors), expected[..., 0, 0])
    assert np.array_equal(gather_particles(th.arange(5.0).expand(3, 5), ancestors).long().numpy(), ancestors.numpy())

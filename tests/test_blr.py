"""Bayesian linear regression against NumPy closed forms and Monte Carlo estimates."""

import numpy as np
import pytest
import torch as th

from sb3_bayes.common.blr import BayesianLinearRegression, cholesky_with_jitter


def data(n: int = 40, d: int = 4, k: int = 3, seed: int = 0) -> tuple[th.Tensor, th.Tensor]:
    generator = th.Generator().manual_seed(seed)
    x = th.randn(n, d, generator=generator, dtype=th.float64)
    y = x @ th.randn(d, k, generator=generator, dtype=th.float64) + 0.1 * th.randn(n, k, generator=generator, dtype=th.float64)
    return x, y


def test_posterior_equals_numpy_closed_form() -> None:
    x, y = data()
    ridge, beta = 3.0, 2.0
    blr = BayesianLinearRegression(4, 3, ridge=ridge, noise_precision=beta, prior_scale=0.5)
    blr.fit([(x[:15], y[:15]), (x[15:], y[15:])])  # chunked accumulation
    xn, yn = x.numpy(), y.numpy()
    precision = beta * xn.T @ xn + ridge * np.eye(4)
    covariance = np.linalg.inv(precision)
    np.testing.assert_allclose(blr.mean.numpy(), beta * covariance @ xn.T @ yn, rtol=1e-10)
    np.testing.assert_allclose(blr.covariance().numpy(), covariance, rtol=1e-10)
    assert int(blr.n_observations) == 40
    # Predictive variance of the mean prediction: s x^T A^-1 x.
    expected = 0.5 * np.einsum("nd,de,ne->n", xn[:5], covariance, xn[:5])
    np.testing.assert_allclose(blr.predictive_variance(x[:5]).numpy(), np.repeat(expected[:, None], 3, axis=1), rtol=1e-10)


@pytest.mark.parametrize("mode, power", [("thompson", 1), ("original", 2)])
def test_sample_covariance(mode: str, power: int) -> None:
    x, y = data(n=6, d=3, k=2)
    scales = th.tensor([0.5, 2.0], dtype=th.float64)
    blr = BayesianLinearRegression(3, 2, ridge=1.0, prior_scale=scales)
    blr.fit([(x, y)])
    generator = th.Generator().manual_seed(1)
    samples = th.stack([blr.sample(mode, generator) for _ in range(20_000)])  # [S, d, k]
    covariance = blr.covariance().numpy()
    for column, scale in enumerate(scales.tolist()):
        empirical = np.cov(samples[:, :, column].numpy(), rowvar=False)
        # Thompson sampling: s A^-1; the original's covariance-as-scale draw: s^2 A^-2.
        expected = scale**power * np.linalg.matrix_power(covariance, power)
        np.testing.assert_allclose(empirical, expected, rtol=0.06, atol=0.03 * np.abs(expected).max())
        np.testing.assert_allclose(samples[:, :, column].mean(0).numpy(), blr.mean[:, column].numpy(), atol=0.05 * scale)


def test_prior_before_data_and_unknown_mode() -> None:
    blr = BayesianLinearRegression(3, 1, ridge=4.0)
    np.testing.assert_allclose(blr.covariance().numpy(), np.eye(3) / 4.0)
    assert bool((blr.mean == 0).all())
    with pytest.raises(ValueError, match="Unknown sampling mode"):
        blr.sample("mean")


def test_state_dict_round_trip() -> None:
    x, y = data()
    blr = BayesianLinearRegression(4, 3)
    blr.fit([(x, y)])
    other = BayesianLinearRegression(4, 3)
    other.load_state_dict(blr.state_dict())
    for key, value in blr.state_dict().items():
        assert th.equal(value, other.state_dict()[key])


def test_cholesky_jitter_retry_and_failure() -> None:
    singular = th.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=th.float64)
    factor = cholesky_with_jitter(singular)
    assert th.allclose(factor @ factor.T, singular, atol=1e-6)
    with pytest.raises(ValueError, match="not positive definite"):
        cholesky_with_jitter(th.full((2, 2), float("nan"), dtype=th.float64))


def test_per_action_posterior_equals_numpy_closed_form_and_samples() -> None:
    from sb3_bayes.common.blr import PerActionBayesianLinearRegression

    x, y = data(n=60, d=3, k=1)
    actions = th.as_tensor(np.random.default_rng(0).integers(0, 3, size=60))
    ridge, beta = 5.0, 2.0
    blr = PerActionBayesianLinearRegression(3, 3, ridge=ridge, noise_precision=beta)
    blr.fit([(x[:25], actions[:25], y[:25, 0]), (x[25:], actions[25:], y[25:, 0])])  # chunked accumulation
    xn, yn, an = x.numpy(), y.numpy()[:, 0], actions.numpy()
    generator = th.Generator().manual_seed(2)
    samples = blr.sample(30_000, generator)  # [S, K, d]
    for action in range(3):
        xa, ya = xn[an == action], yn[an == action]
        covariance = np.linalg.inv(beta * xa.T @ xa + ridge * np.eye(3))
        np.testing.assert_allclose(blr.mean[action].numpy(), beta * covariance @ xa.T @ ya, rtol=1e-10)
        np.testing.assert_allclose(blr.covariance()[action].numpy(), covariance, rtol=1e-10)
        assert int(blr.n_observations[action]) == len(xa)
        empirical = np.cov(samples[:, action].numpy(), rowvar=False)
        np.testing.assert_allclose(empirical, covariance, rtol=0.06, atol=0.03 * np.abs(covariance).max())
        expected = np.einsum("nd,de,ne->n", xn[:4], covariance, xn[:4])
        np.testing.assert_allclose(blr.predictive_variance(x[:4])[:, action].numpy(), expected, rtol=1e-10)
    assert blr.sample().shape == (3, 3)
    with pytest.raises(ValueError, match="actions must lie in"):
        blr.fit([(x, th.full((60,), 3), y[:, 0])])

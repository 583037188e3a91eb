"""Random Fourier features: the kernel they approximate, and the prior they give a Bayesian linear regression."""

import math

import pytest
import torch as th
from reliability import names

from sb3_bayes.common.blr import BayesianLinearRegression
from sb3_bayes.common.random_features import RandomFourierFeatures


def test_inner_products_approximate_the_squared_exponential_kernel() -> None:
    th.manual_seed(0)
    lengthscale = 0.7
    features = RandomFourierFeatures(input_dim=3, n_features=40_000, lengthscale=lengthscale)
    inputs = th.randn(12, 3)
    psi = features(inputs)
    closed_form = th.exp(-th.cdist(inputs, inputs).pow(2) / (2 * lengthscale**2))
    # Monte Carlo error of K = 40k features: standard deviation below 1 / sqrt(K) = 0.005 per entry.
    th.testing.assert_close(psi @ psi.T, closed_form, rtol=0, atol=0.025)


def test_projection_parts_add_up_to_the_whole_input() -> None:
    th.manual_seed(1)
    features = RandomFourierFeatures(input_dim=7, n_features=64, lengthscale=2.0)
    head, tail = th.randn(5, 4), th.randn(5, 3)
    projection = features.projection_of(head) + features.projection_of(tail, start=4)
    th.testing.assert_close(features.features_from_projection(projection), features(th.cat([head, tail], dim=1)))
    by_hand = math.sqrt(2 / 64) * th.cos(th.cat([head, tail], dim=1) @ features.projection.T + features.phase)
    th.testing.assert_close(features(th.cat([head, tail], dim=1)), by_hand)
    # The draw is kept in buffers (saved with the model): frequencies standard normal over the lengthscale.
    assert set(features.state_dict()) == {"projection", "phase"}
    big = RandomFourierFeatures(input_dim=1, n_features=100_000, lengthscale=2.0)
    assert abs(float(big.projection.std()) - 0.5) < 0.005
    assert float(big.phase.min()) >= 0 and float(big.phase.max()) < 2 * math.pi


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match=names("lengthscale")):
        RandomFourierFeatures(3, 8, lengthscale=0.0)
    with pytest.raises(ValueError, match=names("n_features")):
        RandomFourierFeatures(3, 0)
    with pytest.raises(ValueError, match=names("input_dim")):
        RandomFourierFeatures(0, 8)
    with pytest.raises(TypeError, match=names("n_features")):
        RandomFourierFeatures(3, 8.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Expected inputs with 3 coordinates"):
        RandomFourierFeatures(3, 8)(th.zeros(2, 4))


def test_the_prior_stays_where_there_are_no_data() -> None:
    """
    A regression over random features of one-hot inputs (DeepSea's cells) is nearly tabular: after data at some
    inputs, the predictive variance at the others stays near the prior ``1 / ridge``, at the observed ones it drops to
    about ``1 / (ridge + n noise_precision)``, as for independent per-input Gaussians.
    """
    th.manual_seed(2)
    n_inputs, ridge, noise_precision, repeats = 60, 1.0, 10.0, 4
    features = RandomFourierFeatures(n_inputs, n_features=4096, lengthscale=0.3)
    psi = features(th.eye(n_inputs)).double()
    observed = th.arange(0, n_inputs, 2)
    regression = BayesianLinearRegression(psi.shape[1], 1, ridge=ridge, noise_precision=noise_precision, prior_scale=1.0)
    x = psi[observed].repeat(repeats, 1)
    regression.fit([(x, th.ones(len(x), 1, dtype=th.float64))])
    variance = regression.predictive_variance(psi)[:, 0]
    unobserved = th.arange(1, n_inputs, 2)
    tabular_observed = 1 / (ridge + repeats * noise_precision)
    assert float(variance[unobserved].min()) > 0.8 / ridge
    assert float(variance[observed].max()) < 1.5 * tabular_observed
    # The mean follows the data where there are data and stays near the prior's 0 elsewhere (up to the random
    # features' cross-correlations, of order 1 / sqrt(K), summed over the observed inputs).
    mean = (psi @ regression.mean)[:, 0]
    assert float((mean[observed] - 1).abs().max()) < 0.1 and float(mean[unobserved].abs().mean()) < 0.15

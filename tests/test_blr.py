"""Bayesian linear regression against NumPy closed forms and Monte Carlo estimates."""

import numpy as np
import pytest
import torch as th

from sb3_bayes.common.blr import (
    BayesianLinearRegression,
    FixedFeatureGram,
    PerActionBayesianLinearRegression,
    cholesky_with_jitter,
    grouped_statistics,
    posterior_from_statistics,
    predictive_variance,
    thompson_sample,
)


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


def test_fit_with_a_known_gram_block_equals_the_full_fit() -> None:
    """The last f columns' Gram block given by the caller: the same posterior as accumulating it from the chunks."""
    x, y = data(n=50, d=6, k=2, seed=3)
    full = BayesianLinearRegression(6, 2, ridge=2.0, noise_precision=3.0)
    full.fit([(x[:20], y[:20]), (x[20:], y[20:])])
    known = BayesianLinearRegression(6, 2, ridge=2.0, noise_precision=3.0)
    known.fit([(x[:20], y[:20]), (x[20:], y[20:])], fixed_gram=x[:, 2:].T @ x[:, 2:])
    th.testing.assert_close(known.mean, full.mean, rtol=1e-12, atol=1e-12)
    th.testing.assert_close(known.precision_cholesky, full.precision_cholesky, rtol=1e-12, atol=1e-12)
    # The block is used, not recomputed: a different one changes the posterior's precision exactly there.
    other = BayesianLinearRegression(6, 2, ridge=2.0, noise_precision=3.0)
    other.fit([(x, y)], fixed_gram=2 * x[:, 2:].T @ x[:, 2:])
    precision = other.precision_cholesky @ other.precision_cholesky.T
    th.testing.assert_close(precision[2:, 2:], 3.0 * 2 * x[:, 2:].T @ x[:, 2:] + 2.0 * th.eye(4, dtype=th.float64))
    with pytest.raises(ValueError, match="fixed_gram must be a square block"):
        known.fit([(x, y)], fixed_gram=th.zeros(7, 7, dtype=th.float64))


def test_fixed_feature_gram_follows_a_first_in_first_out_store() -> None:
    """Items entering and leaving a FIFO store: the running block equals the fresh sum over the current items."""
    generator = th.Generator().manual_seed(0)
    items = [th.randn(int(n), 5, generator=generator, dtype=th.float64) for n in th.randint(1, 6, (12,), generator=generator)]
    computed: list[int] = []

    def features_of(item: th.Tensor) -> th.Tensor:
        computed.append(id(item))
        return item

    running = FixedFeatureGram(5, features_of)
    th.testing.assert_close(running.update([]), th.zeros(5, 5, dtype=th.float64))
    for window in [(0, 3), (0, 5), (2, 6), (5, 9), (5, 9), (8, 12)]:
        computed.clear()
        store = items[window[0] : window[1]]
        x = th.cat(store)
        th.testing.assert_close(running.update(store), x.T @ x, rtol=1e-12, atol=1e-12)
        assert list(running.included) == store
    # The last steps touched only the items that came or went: (5, 9) again computes nothing.
    assert len(computed) == (12 - 9) + (8 - 5)
    # Not a continuation of the sum (a replaced store): computed afresh.
    store = [items[1], items[4]]
    x = th.cat(store)
    th.testing.assert_close(running.update(store), x.T @ x, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"features_of must return \[n, 4\] features"):
        FixedFeatureGram(4, features_of).update(store)


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


@pytest.mark.parametrize("bad", ["nan-target", "inf-feature", "overflow"])
def test_a_non_finite_fit_keeps_the_previous_posterior(bad: str) -> None:
    """A fit whose statistics or result are not finite raises before it replaces the posterior, for both regressions."""
    x, y = data()
    if bad == "nan-target":
        y = y.clone()
        y[3, 0] = float("nan")
    elif bad == "inf-feature":
        x = x.clone()
        x[5, 0] = float("inf")
    else:  # finite features whose squares overflow float64
        x = x * 1e160
    actions = th.arange(len(x)) % 2
    for blr, chunk, good in [
        (BayesianLinearRegression(4, 3), (x, y), data()),
        (PerActionBayesianLinearRegression(4, 2), (x, actions, y[:, 0]), (data()[0], actions, data()[1][:, 0])),
    ]:
        blr.fit([good])  # type: ignore[list-item]
        posterior = {name: value.clone() for name, value in blr.state_dict().items()}
        with pytest.raises(ValueError, match="NaN or inf"):
            blr.fit([chunk])  # type: ignore[list-item]
        for name, value in blr.state_dict().items():
            assert th.equal(value, posterior[name]), name


def test_bad_constructor_arguments_name_the_parameter() -> None:
    for make in (BayesianLinearRegression, PerActionBayesianLinearRegression):
        with pytest.raises(ValueError, match=r"\bridge\b"):
            make(3, 2, ridge=0.0)
        with pytest.raises(ValueError, match=r"\bnoise_precision\b"):
            make(3, 2, noise_precision=-1.0)
        with pytest.raises(TypeError, match=r"\bn_features\b"):
            make(3.0, 2)  # type: ignore[arg-type]


def test_posterior_buffers_are_row_major() -> None:
    """LAPACK's column-major results are stored row-major, like a loaded copy, so that products with them round alike."""
    x, y = data()
    blr = BayesianLinearRegression(4, 3)
    blr.fit([(x, y)])
    assert blr.mean.is_contiguous() and blr.precision_cholesky.is_contiguous()
    assert all(blr.sample(mode).is_contiguous() for mode in ("thompson", "original"))


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


def random_cholesky(batch: tuple[int, ...], d: int, generator: th.Generator) -> th.Tensor:
    """Lower Cholesky factors of random well-conditioned precisions ``[*batch, d, d]``."""
    root = th.randn(*batch, d, d, generator=generator, dtype=th.float64)
    return th.linalg.cholesky(root @ root.mT + d * th.eye(d, dtype=th.float64))


def test_cholesky_jitter_batched_retries_only_the_failing_members(monkeypatch: pytest.MonkeyPatch) -> None:
    healthy = th.tensor([[[2.0, 0.5], [0.5, 1.0]], [[3.0, 1.0], [1.0, 2.0]], [[1.0, 0.0], [0.0, 4.0]]], dtype=th.float64)
    singular = th.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=th.float64)  # one jittered retry
    indefinite = th.tensor([[1.0, 1.0], [1.0, 1.0 - 1e-6]], dtype=th.float64)  # eigenvalue -5e-7: three retries
    matrix = th.stack([healthy[0], singular, healthy[1], indefinite, healthy[2], healthy[0]]).reshape(2, 3, 2, 2)
    batch_sizes: list[int] = []
    cholesky_ex = th.linalg.cholesky_ex

    def recording_cholesky_ex(a: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        batch_sizes.append(a[..., 0, 0].numel())
        return cholesky_ex(a)

    monkeypatch.setattr(th.linalg, "cholesky_ex", recording_cholesky_ex)
    factor = cholesky_with_jitter(matrix)
    # The whole batch once, then only the failing members, each dropped as soon as its factorisation succeeds.
    assert batch_sizes == [6, 2, 1, 1]
    monkeypatch.setattr(th.linalg, "cholesky_ex", cholesky_ex)
    assert factor.shape == matrix.shape and factor.dtype == th.float64
    flat_matrix, flat_factor = matrix.reshape(-1, 2, 2), factor.reshape(-1, 2, 2)
    for member in range(6):
        # Every member as if factorised alone: healthy ones exactly, without jitter.
        assert th.equal(flat_factor[member], cholesky_with_jitter(flat_matrix[member]))
    for member in (0, 2, 4, 5):
        assert th.equal(flat_factor[member], th.linalg.cholesky(flat_matrix[member]))
    for member, jitter in ((1, 1e-8), (3, 1e-6)):
        scale = float(flat_matrix[member].diagonal().mean())
        expected = th.linalg.cholesky(flat_matrix[member] + jitter * scale * th.eye(2, dtype=th.float64))
        th.testing.assert_close(flat_factor[member], expected, rtol=1e-12, atol=0)
    # One member beyond repair fails the whole batch, with the unbatched error message.
    broken = matrix.clone()
    broken[1, 2] = float("nan")
    with pytest.raises(ValueError, match="not positive definite even with jitter"):
        cholesky_with_jitter(broken)


def test_posterior_from_statistics_batched_equals_numpy_closed_form() -> None:
    generator = th.Generator().manual_seed(3)
    x = th.randn(2, 3, 7, 4, generator=generator, dtype=th.float64)  # 2 x 3 regressions on 7 rows each
    y = th.randn(2, 3, 7, 2, generator=generator, dtype=th.float64)
    ridge, beta = 0.7, 3.0
    cholesky, mean = posterior_from_statistics(x.mT @ x, x.mT @ y, ridge, beta)
    assert cholesky.shape == (2, 3, 4, 4) and mean.shape == (2, 3, 4, 2)
    for i in range(2):
        for j in range(3):
            xn, yn = x[i, j].numpy(), y[i, j].numpy()
            precision = beta * xn.T @ xn + ridge * np.eye(4)  # PRML eq. 3.54
            np.testing.assert_allclose((cholesky[i, j] @ cholesky[i, j].T).numpy(), precision, rtol=1e-12)
            np.testing.assert_allclose(mean[i, j].numpy(), beta * np.linalg.solve(precision, xn.T @ yn), rtol=1e-10)


def test_thompson_sample_and_predictive_variance_batched_equal_per_member_loop() -> None:
    generator = th.Generator().manual_seed(4)
    d, k = 3, 2
    cholesky = random_cholesky((2, 3), d, generator)
    mean = th.randn(2, 3, d, k, generator=generator, dtype=th.float64)
    eps = th.randn(5, 2, 3, d, k, generator=generator, dtype=th.float64)  # a leading sample dimension broadcasts
    scale = th.tensor([0.25, 4.0], dtype=th.float64)
    samples = thompson_sample(mean, cholesky, eps, scale)
    unscaled = thompson_sample(mean, cholesky, eps)
    features = th.randn(6, d, generator=generator, dtype=th.float64)
    variance = predictive_variance(cholesky, features)
    batched_features = th.randn(2, 3, 6, d, generator=generator, dtype=th.float64)
    batched_variance = predictive_variance(cholesky, batched_features)
    assert samples.shape == (5, 2, 3, d, k) and variance.shape == (2, 3, 6) and batched_variance.shape == (2, 3, 6)
    for i in range(2):
        for j in range(3):
            factor = cholesky[i, j].numpy()
            covariance = np.linalg.inv(factor @ factor.T)
            for s in range(5):
                noise = np.linalg.solve(factor.T, eps[s, i, j].numpy())  # L^-T eps
                expected = mean[i, j].numpy() + noise * np.sqrt(scale.numpy())
                np.testing.assert_allclose(samples[s, i, j].numpy(), expected, rtol=1e-12, atol=1e-14)
                np.testing.assert_allclose(unscaled[s, i, j].numpy(), mean[i, j].numpy() + noise, rtol=1e-12, atol=1e-14)
            expected_variance = np.einsum("nd,de,ne->n", features.numpy(), covariance, features.numpy())
            np.testing.assert_allclose(variance[i, j].numpy(), expected_variance, rtol=1e-12)
            own = batched_features[i, j].numpy()
            np.testing.assert_allclose(
                batched_variance[i, j].numpy(), np.einsum("nd,de,ne->n", own, covariance, own), rtol=1e-12
            )


def loop_statistics(x: th.Tensor, y: th.Tensor, groups: th.Tensor, n_groups: int) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """The former per-action loop: ``X_a^T X_a`` and ``X_a^T y_a`` from the rows where ``a`` was taken."""
    gram = th.stack([x[groups == g].T @ x[groups == g] for g in range(n_groups)])
    cross = th.stack([x[groups == g].T @ y[groups == g] for g in range(n_groups)])
    return gram, cross, th.stack([(groups == g).sum() for g in range(n_groups)])


@pytest.mark.parametrize(
    "groups",
    [
        [0, 2, 2, 4, 0, 2, 4, 4, 0, 2, 4, 2],  # balanced over the taken groups, some groups empty
        [1] * 40 + [0, 3, 4, 0, 4],  # skewed: group 1 dominates
        [2, 0],  # fewer rows than groups
        [],  # an empty chunk
    ],
)
def test_grouped_statistics_equal_per_group_loop(groups: list[int]) -> None:
    generator = th.Generator().manual_seed(5)
    n, d, k, n_groups = len(groups), 3, 2, 5
    x = th.randn(n, d, generator=generator, dtype=th.float64)
    y = th.randn(n, k, generator=generator, dtype=th.float64)
    labels = th.tensor(groups, dtype=th.long)
    gram, cross, counts = grouped_statistics(x, y, labels, n_groups)
    expected_gram, expected_cross, expected_counts = loop_statistics(x, y, labels, n_groups)
    assert gram.shape == (n_groups, d, d) and cross.shape == (n_groups, d, k) and counts.dtype == th.long
    th.testing.assert_close(gram, expected_gram, rtol=1e-12, atol=1e-12)
    th.testing.assert_close(cross, expected_cross, rtol=1e-12, atol=1e-12)
    assert th.equal(counts, expected_counts)


def test_per_action_fit_equals_former_loop_with_untaken_actions() -> None:
    generator = th.Generator().manual_seed(6)
    n, d, n_actions, ridge, beta = 300, 6, 6, 4.0, 0.5
    x = th.randn(n, d, generator=generator)  # float32 features, accumulated in float64
    y = th.randn(n, generator=generator)
    taken = th.tensor([0, 2, 3, 5])  # actions 1 and 4 are never taken
    actions = taken[th.randint(0, 4, (n,), generator=generator)]
    actions[100:190] = 3  # one chunk dominated by a single action
    blr = PerActionBayesianLinearRegression(d, n_actions, ridge=ridge, noise_precision=beta)
    bounds = [0, 37, 37, 100, 200, 300]  # uneven chunks, one of them empty
    blr.fit((x[a:b], actions[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))
    # The former implementation: one regression per action, in a Python loop.
    xd, yd = x.double(), y.double()[:, None]
    eye = th.eye(d, dtype=th.float64)
    for action in range(n_actions):
        rows = actions == action
        precision = beta * xd[rows].T @ xd[rows] + ridge * eye
        factor = cholesky_with_jitter(precision)
        th.testing.assert_close(blr.precision_cholesky[action], factor, rtol=1e-12, atol=1e-12)
        expected_mean = beta * th.cholesky_solve(xd[rows].T @ yd[rows], factor)[:, 0]
        th.testing.assert_close(blr.mean[action], expected_mean, rtol=1e-11, atol=1e-12)
        assert int(blr.n_observations[action]) == int(rows.sum())
    for action in (1, 4):  # never taken: exactly the prior
        assert bool((blr.mean[action] == 0).all()) and int(blr.n_observations[action]) == 0
        assert th.equal(blr.precision_cholesky[action], eye * ridge**0.5)
    # Buffers keep their shapes, dtypes and layout (saved models load into them unchanged).
    assert blr.mean.shape == (n_actions, d) and blr.precision_cholesky.shape == (n_actions, d, d)
    assert blr.mean.dtype == blr.precision_cholesky.dtype == th.float64 and blr.n_observations.dtype == th.long
    assert blr.precision_cholesky.is_contiguous()
    assert set(blr.state_dict()) == {"mean", "precision_cholesky", "n_observations"}


def test_samples_follow_the_documented_formulas_bitwise() -> None:
    """The shared helpers must not change any draw: the same generator gives exactly the former samples."""
    x, y = data(n=30, d=4, k=3)
    blr = BayesianLinearRegression(4, 3, prior_scale=th.tensor([0.1, 1.0, 3.0], dtype=th.float64))
    blr.fit([(x, y)])
    eps = th.randn(4, 3, dtype=th.float64, generator=th.Generator().manual_seed(7))
    noise = th.linalg.solve_triangular(blr.precision_cholesky.T, eps, upper=True)
    assert th.equal(blr.sample("thompson", th.Generator().manual_seed(7)), blr.mean + noise * blr.prior_scale.sqrt())
    original = blr.mean + (blr.covariance() @ eps) * blr.prior_scale
    assert th.equal(blr.sample("original", th.Generator().manual_seed(7)), original)
    actions = th.as_tensor(np.random.default_rng(1).integers(0, 3, size=30))
    per_action = PerActionBayesianLinearRegression(4, 3)
    per_action.fit([(x, actions, y[:, 0])])
    for n_samples in (None, 5):
        shape = (1 if n_samples is None else n_samples, 3, 4, 1)
        eps = th.randn(shape, dtype=th.float64, generator=th.Generator().manual_seed(8))
        expected = per_action.mean + th.linalg.solve_triangular(per_action.precision_cholesky.mT, eps, upper=True)[..., 0]
        drawn = per_action.sample(n_samples, th.Generator().manual_seed(8))
        assert th.equal(drawn, expected[0] if n_samples is None else expected)


def test_fit_on_distinct_rows_with_counts_equals_the_fit_on_every_row() -> None:
    """``c`` identical rows have ``c`` times one row's statistics: the distinct rows with counts give the same posterior."""
    gen = th.Generator().manual_seed(3)
    distinct_x, distinct_y = th.randn(12, 6, generator=gen), th.randn(12, 2, generator=gen)
    counts = th.tensor([1, 3, 0, 2, 7, 1, 1, 4, 2, 1, 5, 1])
    full = BayesianLinearRegression(6, 2, ridge=2.0, noise_precision=3.0)
    full.fit([(distinct_x.repeat_interleave(counts, 0), distinct_y.repeat_interleave(counts, 0))])
    weighted = BayesianLinearRegression(6, 2, ridge=2.0, noise_precision=3.0)
    weighted.fit([(distinct_x[:5], distinct_y[:5], counts[:5]), (distinct_x[5:], distinct_y[5:], counts[5:])])
    th.testing.assert_close(weighted.mean, full.mean, rtol=1e-12, atol=1e-12)
    th.testing.assert_close(weighted.precision_cholesky, full.precision_cholesky, rtol=1e-12, atol=1e-12)
    assert int(weighted.n_observations) == int(counts.sum())
    # With a known block of the last columns, too.
    fixed = distinct_x[:, 4:].double().T @ (distinct_x[:, 4:].double() * counts[:, None])
    weighted.fit([(distinct_x, distinct_y, counts)], fixed_gram=fixed)
    th.testing.assert_close(weighted.precision_cholesky, full.precision_cholesky, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="counts"):
        weighted.fit([(distinct_x, distinct_y, -counts)])
    with pytest.raises(ValueError, match="counts"):
        weighted.fit([(distinct_x, distinct_y, counts[:3])])

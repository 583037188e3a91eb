"""
Closed-form Bayesian linear regression over fixed features (a Bayesian last layer, as in PSDRL, Sasso et al., 2023).

For features ``X`` (``[n, d]``) and targets ``Y`` (``[n, k]``), every output column has the prior ``w ~ N(0, I / ridge)``
and Gaussian noise of precision ``noise_precision``. All columns share the features, so they share one posterior
precision matrix ``A = noise_precision X^T X + ridge I`` (Bishop, PRML, eq. 3.53-3.54) and one Cholesky factor:

- posterior mean ``M = noise_precision A^-1 X^T Y`` (one batched solve for all ``k`` outputs);
- posterior covariance of every column ``prior_scale_j A^-1``, where ``prior_scale_j`` rescales the uncertainty per
  output (PSDRL: 1e-3 for both the latent and the reward rows).

Statistics are accumulated in float64 in chunks (``X^T X`` and ``X^T Y``), so the features never need to be held in
memory at once, and the factorisation retries with growing jitter when ``A`` is numerically not positive definite.
"""

from collections.abc import Iterable

import torch as th
from torch import nn

SAMPLING_MODES = ("thompson", "original")


class BayesianLinearRegression(nn.Module):
    """
    Posterior over the weights of a linear map ``y = W^T x`` with ``W`` of shape ``[d, k]``.

    :param n_features: ``d``.
    :param n_outputs: ``k``.
    :param ridge: Prior precision of every weight (PSDRL: 100).
    :param noise_precision: Precision of the observation noise (PSDRL: 1).
    :param prior_scale: Scale of the posterior covariance per output, a float or a ``[k]`` tensor.
    :param device: Device of the statistics.
    """

    mean: th.Tensor
    precision_cholesky: th.Tensor
    prior_scale: th.Tensor
    n_observations: th.Tensor

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        ridge: float = 100.0,
        noise_precision: float = 1.0,
        prior_scale: float | th.Tensor = 1e-3,
        device: th.device | str = "cpu",
    ) -> None:
        super().__init__()
        if ridge <= 0 or noise_precision <= 0:
            raise ValueError(f"ridge and noise_precision must be > 0, got {ridge} and {noise_precision}.")
        self.n_features = n_features
        self.n_outputs = n_outputs
        self.ridge = ridge
        self.noise_precision = noise_precision
        scale = th.as_tensor(prior_scale, dtype=th.float64, device=device)
        # Buffers, so that `state_dict` (and SB3's save/load) round-trips every posterior statistic exactly.
        self.register_buffer("prior_scale", scale.expand(n_outputs).clone() if scale.ndim == 0 else scale.clone())
        # The prior: zero mean, precision ridge * I.
        self.register_buffer("mean", th.zeros(n_features, n_outputs, dtype=th.float64, device=device))
        self.register_buffer("precision_cholesky", th.eye(n_features, dtype=th.float64, device=device) * ridge**0.5)
        self.register_buffer("n_observations", th.zeros((), dtype=th.long, device=device))

    @property
    def device(self) -> th.device:
        return self.mean.device

    def fit(self, chunks: Iterable[tuple[th.Tensor, th.Tensor]]) -> None:
        """
        Recompute the posterior from the prior and all data (the features change whenever the network below retrains).

        :param chunks: An iterable of ``(features [n_i, d], targets [n_i, k])`` pairs.
        """
        gram = th.zeros(self.n_features, self.n_features, dtype=th.float64, device=self.device)
        cross = th.zeros(self.n_features, self.n_outputs, dtype=th.float64, device=self.device)
        n = 0
        for features, targets in chunks:
            x = features.to(self.device, th.float64)
            gram += x.T @ x
            cross += x.T @ targets.to(self.device, th.float64)
            n += x.shape[0]
        self._set_posterior(gram, cross, n)

    def _set_posterior(self, gram: th.Tensor, cross: th.Tensor, n: int) -> None:
        precision = self.noise_precision * gram + self.ridge * th.eye(self.n_features, dtype=th.float64, device=self.device)
        self.precision_cholesky = cholesky_with_jitter(precision)
        self.mean = self.noise_precision * th.cholesky_solve(cross, self.precision_cholesky)
        self.n_observations = th.tensor(n, device=self.device)

    def covariance(self) -> th.Tensor:
        """The shared posterior covariance ``A^-1`` (``[d, d]``, float64), before the per-output ``prior_scale``."""
        return th.cholesky_inverse(self.precision_cholesky)

    def sample(self, mode: str = "thompson", generator: th.Generator | None = None) -> th.Tensor:
        """
        Draw one weight matrix ``[d, k]`` (float64).

        - ``"thompson"`` (default, posterior sampling done right): column ``j`` is ``mean_j + sqrt(s_j) L^-T eps``
          with ``A = L L^T``, so its covariance is exactly ``s_j A^-1``.
        - ``"original"`` (the PSDRL code): ``mean_j + s_j A^-1 eps``, i.e. the covariance matrix used as if it were a
          standard deviation; the samples then have covariance ``s_j^2 A^-2``, far narrower.

        :param mode: ``"thompson"`` or ``"original"``.
        :param generator: Optional random generator.
        :return: The sampled weights.
        """
        eps = th.randn(self.n_features, self.n_outputs, dtype=th.float64, device=self.device, generator=generator)
        if mode == "thompson":
            # L^T v = eps  =>  v = L^-T eps, Cov(v) = (L L^T)^-1 = A^-1.
            noise = th.linalg.solve_triangular(self.precision_cholesky.T, eps, upper=True)
            return self.mean + noise * self.prior_scale.sqrt()
        if mode == "original":
            return self.mean + (self.covariance() @ eps) * self.prior_scale
        raise ValueError(f"Unknown sampling mode '{mode}': choose one of {', '.join(SAMPLING_MODES)}.")

    def predictive_variance(self, features: th.Tensor) -> th.Tensor:
        """
        Epistemic variance of each output's mean prediction, ``s_j x^T A^-1 x`` (``[n, k]``).

        :param features: ``[n, d]``.
        """
        x = features.to(self.device, th.float64)
        half = th.linalg.solve_triangular(self.precision_cholesky, x.T, upper=False)  # L^-1 x
        return half.pow(2).sum(dim=0)[:, None] * self.prior_scale


def cholesky_with_jitter(matrix: th.Tensor, initial_jitter: float = 1e-8, max_tries: int = 8) -> th.Tensor:
    """
    Lower Cholesky factor of a symmetric positive (semi-)definite matrix, adding ``jitter * I`` (growing tenfold per
    failure, as the original does) when the factorisation fails numerically.

    :param matrix: ``[d, d]``.
    :param initial_jitter: First jitter, relative to the mean diagonal.
    :param max_tries: Attempts before giving up.
    :return: ``L`` with ``L L^T = matrix + jitter I``.
    """
    factor, info = th.linalg.cholesky_ex(matrix)
    if int(info) == 0:
        return factor
    scale = float(matrix.diagonal().abs().mean()) or 1.0
    jitter = initial_jitter * scale
    eye = th.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
    for _ in range(max_tries):
        factor, info = th.linalg.cholesky_ex(matrix + jitter * eye)
        if int(info) == 0:
            return factor
        jitter *= 10
    raise ValueError(
        "The Bayesian linear regression's precision matrix is not positive definite even with jitter "
        f"{jitter / 10:.1e}: the features hold NaN/inf or are degenerate; lower the learning rate."
    )


class PerActionBayesianLinearRegression(nn.Module):
    """
    One independent Bayesian linear regression per discrete action over shared features (BDQN's Bayesian last layer,
    Azizzadenesheli et al., 2018, "Efficient Exploration through Bayesian Deep Q-Networks", section 3).

    Action ``a`` has the weights ``w_a ~ N(0, I / ridge)`` and ``y = w_a^T x + N(0, 1 / noise_precision)``, fitted only on
    the samples where ``a`` was taken, so each action has its own precision ``A_a = noise_precision X_a^T X_a + ridge I``,
    mean ``w_a = noise_precision A_a^-1 X_a^T y_a`` and covariance ``A_a^-1`` (Bishop, PRML, eq. 3.53-3.54; BDQN's
    prior variance ``sigma^2`` is ``1 / ridge``, its noise variance ``sigma_eps^2`` is ``1 / noise_precision``).
    Statistics are accumulated in float64, one matrix product per action and chunk.

    :param n_features: ``d``.
    :param n_actions: ``K``.
    :param ridge: Prior precision of every weight (BDQN: ``1 / 0.001``).
    :param noise_precision: Precision of the regression noise (BDQN: 1).
    :param device: Device of the statistics.
    """

    mean: th.Tensor
    precision_cholesky: th.Tensor
    n_observations: th.Tensor

    def __init__(
        self,
        n_features: int,
        n_actions: int,
        ridge: float = 1000.0,
        noise_precision: float = 1.0,
        device: th.device | str = "cpu",
    ) -> None:
        super().__init__()
        if ridge <= 0 or noise_precision <= 0:
            raise ValueError(f"ridge and noise_precision must be > 0, got {ridge} and {noise_precision}.")
        self.n_features = n_features
        self.n_actions = n_actions
        self.ridge = ridge
        self.noise_precision = noise_precision
        # Buffers, so that `state_dict` round-trips the posterior exactly; the prior is the initial value.
        self.register_buffer("mean", th.zeros(n_actions, n_features, dtype=th.float64, device=device))
        eye = th.eye(n_features, dtype=th.float64, device=device) * ridge**0.5
        self.register_buffer("precision_cholesky", eye.expand(n_actions, n_features, n_features).clone())
        self.register_buffer("n_observations", th.zeros(n_actions, dtype=th.long, device=device))

    @property
    def device(self) -> th.device:
        return self.mean.device

    def fit(self, chunks: Iterable[tuple[th.Tensor, th.Tensor, th.Tensor]]) -> None:
        """
        Recompute every action's posterior from the prior and the data.

        :param chunks: An iterable of ``(features [n_i, d], actions [n_i] (integers), targets [n_i])`` triples.
        """
        d, k = self.n_features, self.n_actions
        gram = th.zeros(k, d, d, dtype=th.float64, device=self.device)
        cross = th.zeros(k, d, dtype=th.float64, device=self.device)
        counts = th.zeros(k, dtype=th.long, device=self.device)
        for features, actions, targets in chunks:
            x = features.to(self.device, th.float64)
            y = targets.to(self.device, th.float64).reshape(-1)
            a = actions.to(self.device).reshape(-1).long()
            if x.shape[0] != a.shape[0] or x.shape[0] != y.shape[0]:
                raise ValueError(f"features, actions and targets differ in length: {x.shape[0]}, {a.shape[0]}, {y.shape[0]}.")
            if a.numel() and (int(a.min()) < 0 or int(a.max()) >= k):
                raise ValueError(f"actions must lie in [0, {k}), got values in [{int(a.min())}, {int(a.max())}].")
            for action in range(k):
                # Only the rows where `action` was taken: X_a^T X_a and X_a^T y_a.
                rows = a == action
                x_a = x[rows]
                gram[action] += x_a.T @ x_a
                cross[action] += x_a.T @ y[rows]
                counts[action] += x_a.shape[0]
        precision = self.noise_precision * gram + self.ridge * th.eye(d, dtype=th.float64, device=self.device)
        self.precision_cholesky = th.stack([cholesky_with_jitter(precision[action]) for action in range(k)])
        self.mean = self.noise_precision * th.cholesky_solve(cross[..., None], self.precision_cholesky)[..., 0]
        self.n_observations = counts

    def covariance(self) -> th.Tensor:
        """Every action's posterior covariance ``A_a^-1`` (``[K, d, d]``, float64)."""
        return th.cholesky_inverse(self.precision_cholesky)

    def sample(self, n_samples: int | None = None, generator: th.Generator | None = None) -> th.Tensor:
        """
        Thompson samples of all actions' weights: ``w_a = mean_a + L_a^-T eps`` with ``A_a = L_a L_a^T``, so that
        ``Cov(w_a) = A_a^-1`` exactly.

        :param n_samples: Number of independent samples ``S``; None returns one ``[K, d]`` sample.
        :param generator: Optional random generator.
        :return: ``[K, d]`` or ``[S, K, d]`` (float64).
        """
        shape = (1 if n_samples is None else n_samples, self.n_actions, self.n_features, 1)
        eps = th.randn(shape, dtype=th.float64, device=self.device, generator=generator)
        noise = th.linalg.solve_triangular(self.precision_cholesky.mT, eps, upper=True)[..., 0]
        samples = self.mean + noise
        return samples[0] if n_samples is None else samples

    def predictive_variance(self, features: th.Tensor) -> th.Tensor:
        """
        Epistemic variance of every action's value, ``x^T A_a^-1 x`` (``[n, K]``).

        :param features: ``[n, d]``.
        """
        x = features.to(self.device, th.float64)
        half = th.linalg.solve_triangular(self.precision_cholesky, x.T.expand(self.n_actions, -1, -1), upper=False)
        return half.pow(2).sum(dim=1).T

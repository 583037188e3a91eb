"""
Building blocks of particle filters in torch, batched over independent filters and kept on the device.

Every function works on log-weights of shape ``[..., K]`` (``K`` particles per filter, any number of leading batch
dimensions, e.g. one filter per environment). They are used by DVRL's belief (a particle filter over a VRNN) and are
generic: nothing here knows about a model.

References: Doucet and Johansen, "A tutorial on particle filtering and smoothing" (2009), section 3.4 (resampling);
Le, Igl, Rainforth, Jin and Wood, "Auto-encoding sequential Monte Carlo" (ICLR 2018), eq. (4) (the SMC evidence
estimate ``prod_t mean_k w_t^k`` whose logarithm is the ELBO).
"""

import math

import torch as th


def normalize_log_weights(log_weights: th.Tensor) -> th.Tensor:
    """
    Log of the normalised weights: ``log w_k - log sum_j w_j`` along the last dimension (stable for any scale).

    :param log_weights: Unnormalised log-weights ``[..., K]``.
    :return: Normalised log-weights, same shape (``exp`` sums to one along the last dimension).
    """
    return log_weights - th.logsumexp(log_weights, dim=-1, keepdim=True)


def normalized_weights(log_weights: th.Tensor) -> th.Tensor:
    """
    The normalised weights ``w_k / sum_j w_j`` along the last dimension.

    :param log_weights: Unnormalised log-weights ``[..., K]``.
    :return: Weights in ``[0, 1]`` summing to one along the last dimension.
    """
    return th.softmax(log_weights, dim=-1)


def log_mean_exp(log_weights: th.Tensor) -> th.Tensor:
    """
    ``log (1/K) sum_k exp(log_weights_k)`` along the last dimension: the logarithm of one step's evidence estimate,
    i.e. the per-step ELBO term of auto-encoding SMC when the particles were resampled (uniform previous weights).

    :param log_weights: Log of the incremental importance weights ``[..., K]``.
    :return: Tensor ``[...]``.
    """
    return th.logsumexp(log_weights, dim=-1) - math.log(log_weights.shape[-1])


def effective_sample_size(log_weights: th.Tensor) -> th.Tensor:
    """
    Effective sample size ``1 / sum_k wbar_k^2`` of the normalised weights (between 1 and ``K``).

    :param log_weights: Unnormalised log-weights ``[..., K]``.
    :return: Tensor ``[...]``.
    """
    return 1.0 / normalized_weights(log_weights).pow(2).sum(dim=-1)


def systematic_resample(log_weights: th.Tensor, uniforms: th.Tensor) -> th.Tensor:
    """
    Ancestor indices of systematic resampling (Doucet and Johansen 2009, section 3.4): one uniform ``u`` per filter,
    the ``K`` points ``(u + j) / K`` are located in the cumulative sum of the normalised weights. Particle ``k`` is
    picked ``floor(K w_k)`` or ``ceil(K w_k)`` times, ``K w_k`` on average (unbiased), with less variance than
    multinomial resampling. The indices come out sorted. Not differentiable (indices).

    The uniforms are an argument so that a caller can store them and reproduce a resampling exactly (DVRL recomputes
    its belief over a window of past steps at update time).

    :param log_weights: Unnormalised log-weights ``[..., K]``.
    :param uniforms: One draw from ``U[0, 1)`` per filter, shape ``[...]``.
    :return: Ancestor indices ``[..., K]`` (int64, in ``[0, K)``).
    """
    n_particles = log_weights.shape[-1]
    cdf = th.cumsum(normalized_weights(log_weights.detach()), dim=-1)
    positions = (uniforms.unsqueeze(-1) + th.arange(n_particles, device=log_weights.device, dtype=cdf.dtype)) / n_particles
    # Index i with cdf[i-1] <= position < cdf[i]; rounding may leave cdf[-1] slightly below one, hence the clamp.
    ancestors = th.searchsorted(cdf.contiguous(), positions.contiguous(), right=True)
    return ancestors.clamp_(max=n_particles - 1)


def gather_particles(particles: th.Tensor, ancestors: th.Tensor) -> th.Tensor:
    """
    Select particles by ancestor index along dimension ``ancestors.ndim - 1`` (the particle dimension).

    :param particles: Tensor ``[..., K, *feature_shape]`` (the leading dimensions match ``ancestors``).
    :param ancestors: Indices ``[..., K]`` from :func:`systematic_resample`.
    :return: The resampled particles, same shape as ``particles``.
    """
    extra = particles.shape[ancestors.ndim :]
    index = ancestors.reshape(*ancestors.shape, *([1] * len(extra))).expand(*ancestors.shape, *extra)
    return th.gather(particles, ancestors.ndim - 1, index)

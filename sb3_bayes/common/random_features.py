"""
Random Fourier features (Rahimi and Recht, "Random Features for Large-Scale Kernel Machines", NeurIPS 2007).

``psi(x) = sqrt(2 / K) cos(W x / l + b)`` with ``W ~ N(0, I)`` (``[K, n]``) and ``b ~ U(0, 2 pi)``, drawn once and then
fixed, approximates the squared-exponential kernel: ``E[psi(x)^T psi(x')] = exp(-||x - x'||^2 / (2 l^2))``, with an
error of order ``1 / sqrt(K)``. A Bayesian linear regression with the prior ``v ~ N(0, I / ridge)`` over ``psi`` is
then (approximately) a Gaussian process with that kernel: inputs farther apart than a few lengthscales ``l`` have
nearly independent prior values, so data at one input leave the uncertainty at distant ones untouched. Appended to
learned features, this is a prior function in the sense of Osband, Aslanides and Cassirer ("Randomized Prior Functions
for Deep Reinforcement Learning", NeurIPS 2018): uncertainty that training cannot remove where there are no data.
"""

import math

import torch as th
from torch import nn

from sb3_bayes.common.validation import ParameterValidator


class RandomFourierFeatures(nn.Module):
    """
    Fixed random Fourier features of the squared-exponential kernel with lengthscale ``lengthscale``.

    The projection is drawn at construction from torch's global generator (seeded by SB3's ``set_random_seed``) and
    kept in buffers, so a saved model round-trips it exactly.

    :param input_dim: Size ``n`` of the inputs.
    :param n_features: Number of features ``K``.
    :param lengthscale: Kernel lengthscale ``l`` (in the units of the inputs).
    """

    projection: th.Tensor
    phase: th.Tensor

    def __init__(self, input_dim: int, n_features: int, lengthscale: float = 1.0) -> None:
        super().__init__()
        check = ParameterValidator(type(self).__name__)
        self.input_dim = check.integer("input_dim", input_dim)
        self.n_features = check.integer("n_features", n_features)
        self.lengthscale = check.positive("lengthscale", lengthscale)
        # The kernel's spectral density (Bochner's theorem): frequencies W / l with W standard normal.
        self.register_buffer("projection", th.randn(n_features, input_dim) / lengthscale)
        self.register_buffer("phase", th.rand(n_features) * (2 * math.pi))

    def projection_of(self, inputs: th.Tensor, start: int = 0) -> th.Tensor:
        """
        The part ``inputs W[:, start:start + m]^T / l`` of the projection that comes from input coordinates
        ``start ... start + m - 1``. Projections are linear, so the parts of a concatenated input add up: a caller can
        project the part that stays fixed (an observation) once and add the part that varies (each action).

        :param inputs: ``[..., m]``.
        :param start: Index of the first input coordinate these inputs stand for.
        :return: ``[..., K]`` (without the phase).
        """
        return inputs @ self.projection[:, start : start + inputs.shape[-1]].T

    def features_from_projection(self, projection: th.Tensor) -> th.Tensor:
        """``sqrt(2 / K) cos(projection + b)`` from the sum of the projection parts of a whole input (``[..., K]``)."""
        return math.sqrt(2.0 / self.n_features) * th.cos(projection + self.phase)

    def forward(self, inputs: th.Tensor) -> th.Tensor:
        """
        :param inputs: ``[..., n]``.
        :return: ``psi(inputs)``, ``[..., K]``; ``||psi(x)||^2`` is 1 on average over the draw of the projection.
        """
        if inputs.shape[-1] != self.input_dim:
            raise ValueError(f"Expected inputs with {self.input_dim} coordinates, got shape {tuple(inputs.shape)}.")
        return self.features_from_projection(self.projection_of(inputs))

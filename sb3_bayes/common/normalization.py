"""Input standardisation whose statistics are part of the model's state (saved and restored with it)."""

import torch as th
from torch import nn


class Standardizer(nn.Module):
    """
    ``(x - mean) / std`` per feature, with statistics stored as buffers so that ``state_dict`` round-trips them.

    PETS refits the statistics on all data at every training call (original code: ``fit_input_stats``).

    :param dim: Number of features.
    :param min_std: Standard deviations below this are replaced by one, so that constant features pass through.
    """

    mean: th.Tensor
    std: th.Tensor

    def __init__(self, dim: int, min_std: float = 1e-12) -> None:
        super().__init__()
        self.min_std = min_std
        self.register_buffer("mean", th.zeros(dim))
        self.register_buffer("std", th.ones(dim))

    @th.no_grad()
    def fit(self, data: th.Tensor) -> None:
        """
        :param data: Samples ``[n, dim]``.
        """
        if data.ndim != 2 or data.shape[1] != self.mean.shape[0]:
            raise ValueError(f"Standardizer expects data of shape [n, {self.mean.shape[0]}], got {list(data.shape)}.")
        self.mean.copy_(data.mean(dim=0))
        std = data.std(dim=0, unbiased=False)
        self.std.copy_(th.where(std < self.min_std, th.ones_like(std), std))

    def forward(self, x: th.Tensor) -> th.Tensor:
        return (x - self.mean) / self.std

"""
Bootstrap masks of BayesianDQN's ensemble head without storing them.

Bootstrapped DQN with randomized prior functions (Osband, Aslanides and Cassirer, NeurIPS 2018, Algorithm 1) trains
member ``k`` on transition ``i`` only where the mask ``m_ik ~ Bernoulli(p)`` drawn when the transition entered the replay
is 1. Storing ``m`` (``buffer_size x n_heads``) would need a replay buffer of our own; instead the mask is a hash of the
transition's number (how many rows the buffer had received before it), the member and a seed saved with the model:
``m_ik = [u(seed, i, k) < p]`` with ``u`` uniform on ``[0, 1)``. The masks are thereby fixed per transition,
independent across transitions and members, reproducible, and nothing beyond a counter travels with the replay buffer.

The buffers below are SB3's ``ReplayBuffer`` and ``NStepReplayBuffer`` with that counter and the rows of the last
minibatch (SB3's ``sample`` returns the data, not the rows). Several environments write one row per step: transitions
stored in the same row share their mask (with one environment, every transition has its own).
"""

from typing import Any

import numpy as np
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele, Lea and Flood, 2014): a bijective, well-mixed hash of unsigned 64-bit integers."""
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def bootstrap_masks(transition_numbers: np.ndarray, n_heads: int, probability: float, seed: int) -> np.ndarray:
    """
    The bootstrap masks ``m_ik ~ Bernoulli(probability)`` of transitions ``i`` and members ``k`` (Osband et al., 2018,
    Algorithm 1), as a deterministic function of the transition numbers, the member and ``seed``.

    :param transition_numbers: ``[n]`` numbers of the transitions (rows received by the buffer before each one).
    :param n_heads: Number of members ``K``.
    :param probability: ``p``; 1 trains every member on every transition.
    :param seed: The model's bootstrap seed.
    :return: ``[K, n]`` float32 masks in ``{0, 1}``.
    """
    numbers = np.asarray(transition_numbers, dtype=np.uint64).reshape(1, -1)
    heads = np.arange(n_heads, dtype=np.uint64).reshape(-1, 1)
    keys = _splitmix64(_splitmix64(numbers ^ _splitmix64(np.full(1, seed, dtype=np.uint64))) + heads)
    uniform = (keys >> np.uint64(11)).astype(np.float64) / float(2**53)  # the top 53 bits: a double in [0, 1)
    return (uniform < probability).astype(np.float32)


class BootstrapMaskMixin(ReplayBuffer):
    """
    A replay buffer that counts the rows it received (``n_added``) and remembers the rows of its last minibatch
    (``last_batch_inds``), from which :meth:`transition_numbers` gives each sampled transition's number. List it before
    the SB3 buffer in the bases.
    """

    n_added: int = 0
    last_batch_inds: np.ndarray | None = None

    def add(self, *args: Any, **kwargs: Any) -> None:
        super().add(*args, **kwargs)
        self.n_added += 1

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> ReplayBufferSamples:
        self.last_batch_inds = np.asarray(batch_inds)
        return super()._get_samples(batch_inds, env)

    def transition_numbers(self, rows: np.ndarray) -> np.ndarray:
        """
        :param rows: Rows of the buffer.
        :return: The number of the transition each row holds: rows before ``pos`` were written in the current pass over
            the buffer, the others one pass earlier.
        """
        rows = np.asarray(rows, dtype=np.int64)
        first_of_pass = self.n_added - self.pos  # number of the transition in row 0 of the current pass
        return np.where(rows < self.pos, first_of_pass + rows, first_of_pass + rows - self.buffer_size)

    def last_transition_numbers(self) -> np.ndarray:
        """The numbers of the transitions of the last minibatch."""
        if self.last_batch_inds is None:
            raise RuntimeError("No minibatch has been sampled from this buffer yet.")
        return self.transition_numbers(self.last_batch_inds)


class BootstrapReplayBuffer(BootstrapMaskMixin, ReplayBuffer):
    """SB3's ``ReplayBuffer`` with the transition numbers of the bootstrap masks (:class:`BootstrapMaskMixin`)."""


class BootstrapNStepReplayBuffer(BootstrapMaskMixin, NStepReplayBuffer):
    """SB3's ``NStepReplayBuffer`` with the transition numbers of the bootstrap masks (:class:`BootstrapMaskMixin`)."""


#: The replay buffer of the ensemble head for each buffer class the user may name.
BOOTSTRAP_BUFFERS: dict[type[ReplayBuffer], type[BootstrapMaskMixin]] = {
    ReplayBuffer: BootstrapReplayBuffer,
    NStepReplayBuffer: BootstrapNStepReplayBuffer,
}

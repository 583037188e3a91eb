"""
Uncertainty propagation through a probabilistic ensemble (PETS, Chua et al., 2018, section 4.2).

Particles are the unit of propagation. With ``B`` members and ``P`` particles per candidate action sequence:

- ``E``: one particle, moved to the mean of the members' predicted means (expectation, no sampling).
- ``DS``: distribution sampling; every member predicts for every particle, the predictions are aggregated into one
  Gaussian per particle (mean of means; mean variance plus variance of means) and each particle samples from it.
- ``MM``: moment matching; like DS, then each candidate's particles are refit to one Gaussian and resampled.
- ``TS1``: trajectory sampling with a member re-drawn for each particle at every step.
- ``TSinf``: trajectory sampling with each particle bound to one member for the whole horizon.
"""

from typing import Any

import torch as th

from sb3_bayes.common.validation import ParameterValidator

PROPAGATION_METHODS = ("E", "DS", "TS1", "TSinf", "MM")
# Methods in which a particle is evaluated by the one member it is assigned to (as opposed to all members).
TRAJECTORY_SAMPLING_METHODS = ("TS1", "TSinf")


def check_propagation(check: ParameterValidator, method: Any, n_particles: Any, ensemble_size: int | None = None) -> None:
    """
    Check a propagation configuration with the caller's validator (so that the error names the caller's parameters).

    :param check: The validator of the algorithm or policy that takes these arguments.
    :param method: ``propagation``, one of ``PROPAGATION_METHODS``.
    :param n_particles: Particles per candidate.
    :param ensemble_size: Members of the ensemble; None skips the relation that needs it (checked once it is known).
    """
    check.choice("propagation", method, PROPAGATION_METHODS)
    check.integer("n_particles", n_particles)
    if ensemble_size is not None and method in TRAJECTORY_SAMPLING_METHODS:
        # Trajectory sampling gives every member the same number of particles (one batched product per step).
        check.relation(
            "n_particles",
            n_particles,
            n_particles % ensemble_size == 0,
            f"a multiple of the ensemble size ({ensemble_size}) with propagation={method!r}, which splits the "
            "particles evenly over the members",
        )


def particles_per_candidate(method: str, n_particles: int) -> int:
    """Expectation propagation (``E``) moves a single particle; every other method moves ``n_particles``."""
    return 1 if method == "E" else n_particles


def ensemble_moments(means: th.Tensor, variances: th.Tensor | None) -> tuple[th.Tensor, th.Tensor]:
    """
    Aggregate per-member Gaussians into one Gaussian per input (law of total variance):
    mean of the means, and mean of the variances plus the (population) variance of the means.

    :param means: ``[ensemble_size, n, dim]``.
    :param variances: ``[ensemble_size, n, dim]``, or None for deterministic members.
    :return: ``(mean, variance)``, each ``[n, dim]``.
    """
    mean = means.mean(dim=0)
    variance = means.var(dim=0, unbiased=False)
    if variances is not None:
        variance = variance + variances.mean(dim=0)
    return mean, variance


def sample_gaussian(mean: th.Tensor, variance: th.Tensor | None) -> th.Tensor:
    """
    One sample of ``N(mean, variance)`` per element (the mean itself when ``variance`` is None).

    :param mean: Means.
    :param variance: Variances of the same shape, or None.
    :return: Samples.
    """
    if variance is None:
        return mean
    return mean + variance.sqrt() * th.randn_like(mean)


def moment_match(particles: th.Tensor) -> th.Tensor:
    """
    Refit a diagonal Gaussian to each group's particles and resample them (``MM`` propagation).

    :param particles: ``[..., n_particles, dim]``.
    :return: Fresh particles of the same shape.
    """
    mean = particles.mean(dim=-2, keepdim=True)
    variance = particles.var(dim=-2, unbiased=False, keepdim=True)
    return mean + variance.sqrt() * th.randn_like(particles)


def random_permutation_index(n_groups: int, n_particles: int, device: th.device) -> th.Tensor:
    """
    An independent uniformly random permutation of ``n_particles`` for every group (``TS1`` re-assignment).

    :param n_groups: Number of groups.
    :param n_particles: Particles per group.
    :param device: Device.
    :return: ``[n_groups, n_particles]`` long indices.
    """
    return th.rand(n_groups, n_particles, device=device).argsort(dim=1)

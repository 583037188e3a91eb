"""PETS policy: a probabilistic dynamics ensemble and the model-predictive controller that plans with it."""

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.common.utils import get_device
from torch import nn

from sb3_bayes.common.ensemble import GaussianEnsembleMLP, LayerWeights, gaussian_nll_per_member, mse_per_member
from sb3_bayes.common.normalization import Standardizer
from sb3_bayes.common.policies import EpisodeStartPolicy, constructor_arguments
from sb3_bayes.common.propagation import (
    TRAJECTORY_SAMPLING_METHODS,
    check_propagation,
    ensemble_moments,
    moment_match,
    particles_per_candidate,
    random_permutation_index,
    sample_gaussian,
)
from sb3_bayes.common.trajectory_optimizers import (
    ICEM_EXECUTE,
    CEMOptimizer,
    ICEMOptimizer,
    RandomShootingOptimizer,
    Solution,
    TrajectoryOptimizer,
)
from sb3_bayes.common.utils import PLANNING_DTYPES, bfloat16_matmul_is_fast, check_finite_data, check_flat_box
from sb3_bayes.common.validation import ParameterValidator
from sb3_bayes.envs.known_rewards import KNOWN_MODEL_SPECS, KnownModelSpec, get_known_spec

MODEL_TYPES = ("D", "P", "DE", "PE")
PLANNERS = ("cem", "icem", "random")
# Value given to a candidate whose predicted return is NaN/inf (the original sets such costs to 1e6).
INVALID_RETURN = -1e6

SelfPETSPolicy = TypeVar("SelfPETSPolicy", bound="PETSPolicy")


def member_count(model_type: str, ensemble_size: int) -> int:
    """
    Members of the dynamics model: ``ensemble_size`` for the ensembles ``DE`` and ``PE``, 1 for ``D`` and ``P``.

    :param model_type: One of ``MODEL_TYPES``.
    :param ensemble_size: The ``ensemble_size`` argument.
    :return: The number of members.
    """
    return ensemble_size if model_type.endswith("E") else 1


def check_observation_dims(check: ParameterValidator, name: str, dims: Any, obs_dim: int) -> list[int]:
    """
    A list of observation dimensions (``angle_dims``, ``drop_input_dims``, ``absolute_target_dims``).

    :param check: The validator of the class that takes the argument.
    :param name: Parameter name.
    :param dims: The value given.
    :param obs_dim: Observation size.
    :return: The dimensions as a list of ``int``.
    """
    allowed = f"a list of observation dimensions, integers from 0 to {obs_dim - 1}"
    check.of_type(name, dims, isinstance(dims, Sequence) and not isinstance(dims, (str, bytes)), allowed)
    indices = [check.integer(name, d, minimum=None) for d in dims]
    check.relation(name, dims, all(0 <= d < obs_dim for d in indices), allowed)
    return indices


def check_input_dims(
    check: ParameterValidator, obs_dim: int, angle_dims: Any, drop_input_dims: Any, absolute_target_dims: Any
) -> tuple[list[int], list[int], list[int]]:
    """
    The observation dimensions that the dynamics model encodes as angles, drops from its input or predicts absolutely.

    :param check: The validator of the class that takes the arguments.
    :param obs_dim: Observation size.
    :param angle_dims: Dimensions fed as ``(sin, cos)``.
    :param drop_input_dims: Dimensions not fed to the model.
    :param absolute_target_dims: Dimensions predicted absolutely.
    :return: The three lists of ``int``.
    """
    angles = check_observation_dims(check, "angle_dims", angle_dims, obs_dim)
    dropped = check_observation_dims(check, "drop_input_dims", drop_input_dims, obs_dim)
    absolute = check_observation_dims(check, "absolute_target_dims", absolute_target_dims, obs_dim)
    # A dimension in both lists would be fed as an angle although it was meant to be dropped.
    check.relation("drop_input_dims", drop_input_dims, not set(angles) & set(dropped), f"disjoint from angle_dims ({angles})")
    return angles, dropped, absolute


@dataclass(frozen=True)
class PlannerSettings:
    """
    How the model-predictive controller plans. These are arguments of ``PETS`` (top-level YAML keys in rl-zoo3), which
    hands them to its policy as one ``PlannerSettings``; a ``PETSPolicy`` built on its own takes one too (None: these
    defaults, which are PETS's).

    :param planner: ``"cem"``, ``"icem"`` or ``"random"`` (random shooting).
    :param plan_horizon: Planning horizon (steps).
    :param popsize: Candidates per planner iteration (iCEM: of its first iteration).
    :param num_elites: CEM and iCEM elites, at most ``popsize`` with those planners.
    :param cem_iters: CEM and iCEM iterations.
    :param cem_alpha: CEM and iCEM smoothing (weight of the old distribution), in ``[0, 1)``.
    :param cem_epsilon: CEM variance threshold of the early stop, ``>= 0``.
    :param n_particles: Particles per candidate.
    :param propagation: ``"E"``, ``"DS"``, ``"TS1"``, ``"TSinf"`` or ``"MM"`` (section 4.2 of the paper).
    :param planning_dtype: ``"float32"`` or ``"bfloat16"`` (matrix products during planning, with a copy of the weights
        cast once after every change of the weights).
    :param icem_noise_beta: iCEM: exponent of the coloured noise's power spectrum, ``>= 0`` (0: white noise).
    :param icem_population_decay: iCEM: factor by which the population shrinks per iteration, ``>= 1``.
    :param icem_keep_elites_frac: iCEM: fraction of the elites kept across iterations and (shifted) across steps.
    :param icem_execute: iCEM: ``"best"`` executes the best sequence's first action (the original), ``"mean"`` the
        final mean's.
    :param planning_threads: Torch threads while planning (restored afterwards), or None to keep torch's setting.
    """

    planner: str = "cem"
    plan_horizon: int = 25
    popsize: int = 400
    num_elites: int = 40
    cem_iters: int = 5
    cem_alpha: float = 0.1
    cem_epsilon: float = 1e-3
    n_particles: int = 20
    propagation: str = "TSinf"
    planning_dtype: str = "float32"
    icem_noise_beta: float = 2.0
    icem_population_decay: float = 1.25
    icem_keep_elites_frac: float = 0.3
    icem_execute: str = "best"
    planning_threads: int | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The settings' names, which are also the names of the ``PETS`` arguments that set them."""
        return tuple(field.name for field in fields(cls))

    @classmethod
    def fold_flat_arguments(cls, arguments: dict[str, Any]) -> dict[str, Any]:
        """
        Constructor arguments of a ``PETSPolicy`` saved when it took every setting as its own argument (before
        ``PlannerSettings`` existed), rewritten to the present signature: those entries become one ``planner_settings``.

        :param arguments: The ``data`` of a saved policy.
        :return: The arguments unchanged if they hold no setting by name, else a copy with the settings folded.
        """
        flat = {name: arguments[name] for name in cls.names() if name in arguments}
        if not flat:
            return arguments
        if "planner_settings" in arguments:
            raise ValueError(f"Saved PETSPolicy arguments hold both planner_settings and {sorted(flat)}")
        folded = {key: value for key, value in arguments.items() if key not in flat}
        folded["planner_settings"] = cls(**flat)
        return folded

    def check(self, check: ParameterValidator, ensemble_size: int | None = None) -> None:
        """
        Check every setting: PETS checks them as its arguments when it is built, and the policy again with the number
        of members it builds.

        :param check: The validator of the class that takes the settings (it names that class in its errors).
        :param ensemble_size: Members of the dynamics model; None skips the relation of ``n_particles`` to it.
        """
        check.choice("planner", self.planner, PLANNERS)
        check.integer("plan_horizon", self.plan_horizon)
        check.integer("popsize", self.popsize)
        check.integer("num_elites", self.num_elites)
        if self.planner in ("cem", "icem"):  # random shooting has no elites
            allowed = f"at most popsize ({self.popsize}) with planner={self.planner!r}"
            check.relation("num_elites", self.num_elites, self.num_elites <= self.popsize, allowed)
        check.integer("cem_iters", self.cem_iters)
        check.real("cem_alpha", self.cem_alpha, low=0.0, high=1.0, high_open=True)
        check.non_negative("cem_epsilon", self.cem_epsilon)
        check_propagation(check, self.propagation, self.n_particles, ensemble_size)
        check.choice("planning_dtype", self.planning_dtype, tuple(PLANNING_DTYPES))
        check.non_negative("icem_noise_beta", self.icem_noise_beta)
        check.real("icem_population_decay", self.icem_population_decay, low=1.0)
        check.fraction("icem_keep_elites_frac", self.icem_keep_elites_frac, zero=True)
        check.choice("icem_execute", self.icem_execute, ICEM_EXECUTE)
        check.optional(check.integer, "planning_threads", self.planning_threads)


@contextlib.contextmanager
def torch_threads(n_threads: int | None) -> Iterator[None]:
    """
    Run the block with ``n_threads`` torch (intra-op) threads, then restore the previous number; None changes nothing.

    The planner's products are small (a few hundred rows per member): split over threads, each op waits at a barrier
    for all of them, which costs more than it saves on a loaded machine (measured 20x slower with 2 threads than with 1
    on a 2-core CPU shared with other jobs).

    :param n_threads: Threads inside the block, or None.
    """
    previous = th.get_num_threads()
    if n_threads is None or n_threads == previous:
        yield
        return
    th.set_num_threads(n_threads)
    try:
        yield
    finally:
        th.set_num_threads(previous)


class PlanResult(NamedTuple):
    """One MPC step of ``PETSPolicy.plan`` for a batch of environments."""

    actions: th.Tensor  # [n_envs, action_dim], the actions to execute
    warm_start: th.Tensor  # [n_envs, horizon, action_dim], the next step's initial mean
    warm_elites: th.Tensor  # [n_envs, n_kept, horizon, action_dim], the next step's carried sequences (iCEM)
    solution: Solution  # the optimiser's outcome (the plan and the statistics of the search)


class DynamicsPrediction(NamedTuple):
    """One step of every member's prediction, in observation space (deltas already added)."""

    mean: th.Tensor  # [ensemble, n, obs_dim (+1 learned reward)]
    variance: th.Tensor | None  # same shape, None for deterministic models
    termination_logit: th.Tensor | None  # [ensemble, n], None unless termination is learned


class DynamicsEnsemble(nn.Module):
    """
    The PETS dynamics model: ``p(s' - s, r | s, a)`` as an ensemble of Gaussian MLPs.

    Inputs are the pre-processed observation (dropped dimensions removed, angles replaced by their sine and cosine)
    concatenated with the action, standardised with statistics refit at every training call. Targets are state
    deltas, except for ``absolute_target_dims`` that are predicted directly (section 4.1 and appendix of the paper),
    followed by the reward when it is learned. A learned termination is an extra logit trained with cross-entropy.

    :param obs_dim: Observation size.
    :param action_dim: Action size.
    :param model_type: ``"D"``, ``"P"``, ``"DE"`` or ``"PE"`` (deterministic / probabilistic, single / ensemble).
    :param ensemble_size: Members of the ensemble (forced to 1 for ``D`` and ``P``).
    :param net_arch: Hidden widths.
    :param activation_fn: Activation function.
    :param angle_dims: Observation dimensions fed to the network as ``(sin, cos)``.
    :param drop_input_dims: Observation dimensions not fed to the network.
    :param absolute_target_dims: Observation dimensions predicted absolutely instead of as deltas.
    :param learn_reward: Whether the reward is an output of the network.
    :param learn_termination: Whether a termination logit is an output of the network.
    """

    passthrough_dims: th.Tensor
    angle_dims: th.Tensor
    delta_mask: th.Tensor

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        model_type: str = "PE",
        ensemble_size: int = 5,
        net_arch: Sequence[int] = (200, 200, 200),
        activation_fn: type[nn.Module] = nn.SiLU,
        angle_dims: Sequence[int] = (),
        drop_input_dims: Sequence[int] = (),
        absolute_target_dims: Sequence[int] = (),
        learn_reward: bool = True,
        learn_termination: bool = True,
    ) -> None:
        super().__init__()
        check = ParameterValidator(type(self).__name__)
        check.choice("model_type", model_type, MODEL_TYPES)
        angle_dims, drop_input_dims, absolute_target_dims = check_input_dims(
            check, obs_dim, angle_dims, drop_input_dims, absolute_target_dims
        )
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.model_type = model_type
        self.learn_reward = learn_reward
        self.learn_termination = learn_termination
        special = set(angle_dims) | set(drop_input_dims)
        passthrough = [d for d in range(obs_dim) if d not in special]
        self.register_buffer("passthrough_dims", th.tensor(passthrough, dtype=th.long), persistent=False)
        self.register_buffer("angle_dims", th.tensor(sorted(set(angle_dims)), dtype=th.long), persistent=False)
        delta_mask = th.ones(obs_dim)
        delta_mask[list(absolute_target_dims)] = 0.0
        self.register_buffer("delta_mask", delta_mask, persistent=False)
        self.input_dim = len(passthrough) + 2 * len(self.angle_dims) + action_dim
        self.output_dim = obs_dim + int(learn_reward)
        self.network = GaussianEnsembleMLP(
            self.input_dim,
            self.output_dim,
            ensemble_size=member_count(model_type, ensemble_size),
            net_arch=net_arch,
            activation_fn=activation_fn,
            probabilistic=model_type.startswith("P"),
            n_extra_outputs=int(learn_termination),
        )
        self.input_normalizer = Standardizer(self.input_dim)

    @property
    def ensemble_size(self) -> int:
        return self.network.ensemble_size

    def raw_inputs(self, obs: th.Tensor, action: th.Tensor) -> th.Tensor:
        """Pre-processed, not yet standardised network input ``[..., input_dim]``."""
        if len(self.angle_dims) == 0 and len(self.passthrough_dims) == self.obs_dim:
            return th.cat([obs, action], dim=-1)  # nothing to transform (the common case, and a hot path)
        angles = obs[..., self.angle_dims]
        return th.cat([obs[..., self.passthrough_dims], th.sin(angles), th.cos(angles), action], dim=-1)

    def targets(self, obs: th.Tensor, next_obs: th.Tensor, reward: th.Tensor) -> th.Tensor:
        """Regression targets ``[..., output_dim]``: deltas (or absolute values), then the reward if learned."""
        state_target = next_obs - obs * self.delta_mask
        if not self.learn_reward:
            return state_target
        return th.cat([state_target, reward.unsqueeze(-1)], dim=-1)

    def predict(self, obs: th.Tensor, action: th.Tensor) -> DynamicsPrediction:
        """
        :param obs: ``[ensemble_size, n, obs_dim]``, or ``[1, n, obs_dim]`` broadcast over members.
        :param action: Same leading shape, ``[..., action_dim]``.
        :return: Every member's prediction for its inputs.
        """
        inputs = self.input_normalizer(self.raw_inputs(obs, action))
        if inputs.shape[0] != self.ensemble_size:
            inputs = inputs.expand(self.ensemble_size, -1, -1)
        mean, logvar, extra = self.network(inputs)
        state_mean = mean[..., : self.obs_dim] + obs * self.delta_mask
        mean = th.cat([state_mean, mean[..., self.obs_dim :]], dim=-1) if self.learn_reward else state_mean
        variance = None if logvar is None else logvar.exp()
        logit = None if extra is None else extra[..., 0]
        return DynamicsPrediction(mean, variance, logit)

    def loss(self, inputs: th.Tensor, targets: th.Tensor, terminations: th.Tensor) -> th.Tensor:
        """
        Training loss summed over members, without regularisers (see ``GaussianEnsembleMLP`` for those).

        :param inputs: Standardised inputs ``[ensemble_size, batch, input_dim]``.
        :param targets: ``[ensemble_size, batch, output_dim]``.
        :param terminations: ``[ensemble_size, batch]`` in {0, 1}.
        :return: Scalar loss.
        """
        mean, logvar, extra = self.network(inputs)
        per_member = mse_per_member(mean, targets) if logvar is None else gaussian_nll_per_member(mean, logvar, targets)
        loss = per_member.sum()
        if extra is not None:
            loss = loss + F.binary_cross_entropy_with_logits(extra[..., 0], terminations, reduction="none").mean(1).sum()
        return loss


class PETSPolicy(EpisodeStartPolicy):
    """
    Policy of PETS: the dynamics ensemble and a model-predictive controller that re-plans at every step.

    Every argument is checked here, when the policy is built. The reward model and the planner settings are arguments
    of ``PETS``, which hands them to the policy by name (``reward_fn``, ``planner_settings``): under ``PETS`` they are
    not ``policy_kwargs`` entries. They are arguments here for a policy built or loaded on its own.

    :param observation_space: Observation space (flat ``Box``).
    :param action_space: Action space (``Box`` with finite bounds).
    :param lr_schedule: Learning-rate schedule of the dynamics model.
    :param model_type: ``"D"``, ``"P"``, ``"DE"`` or ``"PE"``.
    :param ensemble_size: Members of the ensemble for ``DE`` and ``PE``.
    :param net_arch: Hidden widths of every member (default ``[200, 200, 200]``).
    :param activation_fn: Activation function (swish by default).
    :param weight_decay: L2 coefficient, one for all layers or one per affine layer (input to output).
    :param angle_dims: Observation dimensions fed as ``(sin, cos)``; None takes them from the known model, if any.
    :param drop_input_dims: Observation dimensions not fed to the model; None: from the known model, if any.
    :param absolute_target_dims: Dimensions predicted absolutely; None: from the known model, if any.
    :param reward_fn: Env id of a known reward/termination model (``sb3_bayes.envs.known_rewards``); None learns them.
    :param planner_settings: How the controller plans (None: the defaults of :class:`PlannerSettings`).
    :param optimizer_class: Optimizer of the dynamics model.
    :param optimizer_kwargs: Its keyword arguments.
    """

    action_low: th.Tensor
    action_high: th.Tensor

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        model_type: str = "PE",
        ensemble_size: int = 5,
        net_arch: Sequence[int] | None = None,
        activation_fn: type[nn.Module] = nn.SiLU,
        weight_decay: float | Sequence[float] = 5e-5,
        angle_dims: Sequence[int] | None = None,
        drop_input_dims: Sequence[int] | None = None,
        absolute_target_dims: Sequence[int] | None = None,
        reward_fn: str | None = None,
        planner_settings: PlannerSettings | None = None,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(observation_space, action_space, optimizer_class=optimizer_class, optimizer_kwargs=optimizer_kwargs)
        check = ParameterValidator(type(self).__name__)
        obs_dim = check_flat_box(observation_space, "observation", type(self).__name__).shape[0]
        check_flat_box(action_space, "action", type(self).__name__, finite=True)
        check.optional(check.choice, "reward_fn", reward_fn, tuple(KNOWN_MODEL_SPECS))
        self.reward_fn = reward_fn
        self.known_model: KnownModelSpec | None = get_known_spec(reward_fn) if reward_fn is not None else None
        self.model_type = check.choice("model_type", model_type, MODEL_TYPES)
        self.ensemble_size = check.integer("ensemble_size", ensemble_size)
        self.net_arch = check.sizes("net_arch", [200, 200, 200] if net_arch is None else net_arch, allow_empty=False)
        check.subclass("activation_fn", activation_fn, nn.Module)
        self.activation_fn = activation_fn
        self.weight_decay = self._checked_weight_decay(check, weight_decay)
        self.angle_dims, self.drop_input_dims, self.absolute_target_dims = check_input_dims(
            check,
            obs_dim,
            self._dims_or_known(angle_dims, "angle_dims"),
            self._dims_or_known(drop_input_dims, "drop_input_dims"),
            self._dims_or_known(absolute_target_dims, "absolute_target_dims"),
        )
        settings = PlannerSettings() if planner_settings is None else planner_settings
        check.of_type("planner_settings", settings, isinstance(settings, PlannerSettings), "a PlannerSettings or None")
        settings.check(check, ensemble_size=member_count(self.model_type, self.ensemble_size))
        self.planner_settings = settings
        check.subclass("optimizer_class", optimizer_class, th.optim.Optimizer)
        check.keyword_arguments("optimizer_kwargs", optimizer_kwargs)
        # The policy passes lr itself (from learning_rate): a second one would fail deep inside the optimiser.
        no_lr = "a dict without 'lr' (set learning_rate)"
        check.relation("optimizer_kwargs", self.optimizer_kwargs, "lr" not in self.optimizer_kwargs, no_lr)
        self._planning_dtype_checked = False
        # The planning copy of the dynamics weights (bfloat16), with the key of the weights it was cast from.
        self._planning_weights: LayerWeights | None = None
        self._planning_weights_key: tuple[tuple[int, int], ...] | None = None
        self.n_planning_weight_casts = 0
        self._build(lr_schedule)

    def _checked_weight_decay(self, check: ParameterValidator, weight_decay: Any) -> list[float]:
        """``weight_decay`` as one coefficient >= 0 per affine layer (input to output)."""
        n_layers = len(self.net_arch) + 1
        if not isinstance(weight_decay, Sequence) or isinstance(weight_decay, str):
            return [check.non_negative("weight_decay", weight_decay)] * n_layers
        decays = [check.non_negative("weight_decay", decay) for decay in weight_decay]
        check.relation(
            "weight_decay",
            weight_decay,
            len(decays) == n_layers,
            f"a number >= 0 or one value per affine layer ({n_layers} for net_arch={self.net_arch})",
        )
        return decays

    def _dims_or_known(self, dims: Sequence[int] | None, name: str) -> Sequence[int]:
        if dims is not None:
            return dims
        return list(getattr(self.known_model, name)) if self.known_model is not None else []

    def _build(self, lr_schedule: Schedule) -> None:
        assert isinstance(self.observation_space, spaces.Box) and isinstance(self.action_space, spaces.Box)
        obs_dim = self.observation_space.shape[0]
        action_dim = self.action_space.shape[0]
        self.dynamics = DynamicsEnsemble(
            obs_dim,
            action_dim,
            model_type=self.model_type,
            ensemble_size=self.ensemble_size,
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            angle_dims=self.angle_dims,
            drop_input_dims=self.drop_input_dims,
            absolute_target_dims=self.absolute_target_dims,
            learn_reward=self.known_model is None,
            learn_termination=self.known_model is None,
        )
        self.register_buffer("action_low", th.as_tensor(self.action_space.low, dtype=th.float32), persistent=False)
        self.register_buffer("action_high", th.as_tensor(self.action_space.high, dtype=th.float32), persistent=False)
        # Planner state: the previous solution of `predict`, shifted (the warm start of the next call), and the
        # sequences the planner carries to the next call (iCEM's shifted elites).
        self.plan_warm_start = th.zeros(0, self.planner_settings.plan_horizon, action_dim)
        self.plan_warm_elites = th.zeros(0, 0, self.planner_settings.plan_horizon, action_dim)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def make_trajectory_optimizer(self) -> TrajectoryOptimizer:
        """The planner, with bounds on the policy's device."""
        settings = self.planner_settings
        bounds = (self.action_low, self.action_high, settings.plan_horizon)
        if settings.planner == "random":
            return RandomShootingOptimizer(*bounds, settings.popsize)
        cem_settings: dict[str, Any] = dict(
            popsize=settings.popsize, num_elites=settings.num_elites, max_iters=settings.cem_iters, alpha=settings.cem_alpha
        )
        if settings.planner == "icem":
            return ICEMOptimizer(
                *bounds,
                **cem_settings,
                noise_beta=settings.icem_noise_beta,
                population_decay=settings.icem_population_decay,
                keep_elites_frac=settings.icem_keep_elites_frac,
                execute=settings.icem_execute,
            )
        return CEMOptimizer(*bounds, **cem_settings, epsilon=settings.cem_epsilon)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return constructor_arguments(self, PETSPolicy, super()._get_constructor_parameters())

    @classmethod
    def load(cls: type[SelfPETSPolicy], path: str, device: th.device | str = "auto") -> SelfPETSPolicy:
        """
        Load a policy saved with ``policy.save``, also one saved before the planner settings became one
        ``PlannerSettings`` (their entries are folded into it), so that no saved policy is lost to the change.

        :param path: File written by ``policy.save``.
        :param device: Device on which the policy should be loaded.
        :return: The policy, with its weights.
        """
        device = get_device(device)
        # As SB3's BaseModel.load: the saved data holds gymnasium spaces, which weights_only=True would refuse.
        saved_variables = th.load(path, map_location=device, weights_only=False)
        policy = cls(**PlannerSettings.fold_flat_arguments(saved_variables["data"]))
        policy.load_state_dict(saved_variables["state_dict"])
        policy.to(device)
        return policy

    # ----------------------------------------------------------------------------------------------------------------
    # Planning
    # ----------------------------------------------------------------------------------------------------------------
    def evaluate_action_sequences(self, obs: th.Tensor, candidates: th.Tensor) -> th.Tensor:
        """
        Expected return of every candidate action sequence under the model, by particle propagation (section 4.2).

        :param obs: Current observations ``[n_envs, obs_dim]``.
        :param candidates: Action sequences ``[n_envs, n_candidates, horizon, action_dim]``.
        :return: Mean over particles of the summed reward, ``[n_envs, n_candidates]``; non-finite values are replaced
            by a large negative return so that diverging candidates are never elites.
        """
        n_envs, n_candidates, horizon, action_dim = candidates.shape
        obs_dim = self.dynamics.obs_dim
        ensemble_size = self.dynamics.ensemble_size
        trajectory_sampling = self.planner_settings.propagation in TRAJECTORY_SAMPLING_METHODS
        if trajectory_sampling:
            # Member-major layout [ensemble, n_envs * n_candidates * particles_per_member]: each member sees its own
            # slice of the particles, so one batched product evaluates every member on its particles only.
            per_member = self.planner_settings.n_particles // ensemble_size
            shape = (ensemble_size, n_envs, n_candidates, per_member)
            state = obs[None, :, None, None, :].expand(*shape, obs_dim).reshape(ensemble_size, -1, obs_dim)
        else:
            per_member = particles_per_candidate(self.planner_settings.propagation, self.planner_settings.n_particles)
            shape = (1, n_envs, n_candidates, per_member)
            state = obs[None, :, None, None, :].expand(*shape, obs_dim).reshape(1, -1, obs_dim)
        returns = th.zeros(state.shape[:-1], device=obs.device)
        alive = th.ones_like(returns)
        for t in range(horizon):
            action = candidates[None, :, :, t, None, :].expand(*shape, action_dim).reshape(*state.shape[:-1], action_dim)
            if t == 0 and per_member > 1:
                prediction = self._predict_first_step(state, action, per_member)
            else:
                prediction = self.dynamics.predict(state, action)
            if trajectory_sampling:
                sample = sample_gaussian(prediction.mean, prediction.variance)
                terminated_prob = None if prediction.termination_logit is None else th.sigmoid(prediction.termination_logit)
            else:
                mean, variance = ensemble_moments(prediction.mean, prediction.variance)
                sample = (mean if self.planner_settings.propagation == "E" else sample_gaussian(mean, variance)).unsqueeze(0)
                if self.planner_settings.propagation == "MM":
                    groups = sample[..., :obs_dim].reshape(n_envs * n_candidates, per_member, obs_dim)
                    sample = th.cat([moment_match(groups).reshape(1, -1, obs_dim), sample[..., obs_dim:]], dim=-1)
                terminated_prob = None
                if prediction.termination_logit is not None:
                    terminated_prob = th.sigmoid(prediction.termination_logit).mean(dim=0, keepdim=True)
            next_state = sample[..., :obs_dim].float()
            if self.known_model is None:
                reward = sample[..., obs_dim].float()
                assert terminated_prob is not None
                terminated = terminated_prob > 0.5
            else:
                reward = self.known_model.reward_fn(state, action, next_state).float()
                terminated = self.known_model.termination_fn(state, action, next_state)
            # A terminated particle collects no reward afterwards (its later predictions are meaningless).
            returns = returns + alive * reward
            alive = alive * (~terminated).float()
            state = next_state
            if self.planner_settings.propagation == "TS1" and t < horizon - 1:
                state, returns, alive = self._reassign_members(state, returns, alive, n_envs * n_candidates)
        returns = returns.reshape(*shape).permute(1, 2, 0, 3).reshape(n_envs, n_candidates, -1).mean(dim=-1)
        return th.where(th.isfinite(returns), returns, th.full_like(returns, INVALID_RETURN))

    def _predict_first_step(self, state: th.Tensor, action: th.Tensor, per_member: int) -> DynamicsPrediction:
        """
        At the first step all particles that a member holds for one candidate share the start state and the action:
        evaluate each group once and repeat the prediction (the sampling noise is still drawn per particle).
        """
        groups = state.shape[1] // per_member
        first = self.dynamics.predict(
            state.view(state.shape[0], groups, per_member, -1)[:, :, 0],
            action.view(action.shape[0], groups, per_member, -1)[:, :, 0],
        )

        def repeat(x: th.Tensor | None) -> th.Tensor | None:
            if x is None:
                return None
            return x.unsqueeze(2).expand(*x.shape[:2], per_member, *x.shape[2:]).reshape(x.shape[0], -1, *x.shape[2:])

        mean = repeat(first.mean)
        assert mean is not None
        return DynamicsPrediction(mean, repeat(first.variance), repeat(first.termination_logit))

    def _reassign_members(
        self, state: th.Tensor, returns: th.Tensor, alive: th.Tensor, n_groups: int
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """TS1: permute each candidate's particles at random, i.e. draw a fresh member for every particle."""
        ensemble_size = state.shape[0]
        index = random_permutation_index(n_groups, self.planner_settings.n_particles, state.device)

        def permute(x: th.Tensor) -> th.Tensor:
            # [ensemble, groups * per_member, *feature] -> [groups, particles, *feature], shuffle, and back.
            feature = x.shape[2:]
            grouped = (
                x.reshape(ensemble_size, n_groups, -1, *feature)
                .transpose(0, 1)
                .reshape(n_groups, self.planner_settings.n_particles, *feature)
            )
            shuffled = grouped.gather(
                1, index.view(n_groups, self.planner_settings.n_particles, *([1] * len(feature))).expand_as(grouped)
            )
            return shuffled.reshape(n_groups, ensemble_size, -1, *feature).transpose(0, 1).reshape(x.shape)

        return permute(state), permute(returns), permute(alive)

    def planning_weights(self) -> LayerWeights | None:
        """
        The weights the planner multiplies with: None (the parameters) for ``planning_dtype="float32"``, else a copy
        cast to bfloat16 once per change of the weights (a training round, a load, a move to another device), not at
        every product as autocast would. The copy is keyed by the parameters' storage and in-place version counters,
        which every optimiser step and ``load_state_dict`` advance.

        :return: ``(weight, bias)`` per affine layer, or None.
        """
        if self.planner_settings.planning_dtype == "float32":
            return None
        layers = self.dynamics.network.linear_layers
        key = tuple((p.data_ptr(), p._version) for layer in layers for p in (layer.weight, layer.bias))
        if self._planning_weights is None or key != self._planning_weights_key:
            self._planning_weights = self.dynamics.network.cast_weights(PLANNING_DTYPES[self.planner_settings.planning_dtype])
            self._planning_weights_key = key
            self.n_planning_weight_casts += 1
        return self._planning_weights

    def plan(self, obs: th.Tensor, warm_start: th.Tensor | None = None, warm_elites: th.Tensor | None = None) -> PlanResult:
        """
        One MPC step for a batch of environments: optimise action sequences, return the first actions.

        :param obs: Observations ``[n_envs, obs_dim]``.
        :param warm_start: The previous solutions shifted by one step ``[n_envs, horizon, action_dim]``; None (or one
            of another batch size or horizon) starts from the middle of the action bounds.
        :param warm_elites: The sequences carried from the previous step (iCEM's shifted elites) ``[n_envs, n_kept,
            horizon, action_dim]``; None (or ones that do not fit the planner settings) carries none.
        :return: The actions, the next warm start and carried sequences, and the optimiser's solution.
        """
        check_finite_data(obs, "observation", "PETS")
        if not self._planning_dtype_checked:
            self._check_planning_dtype()
            self._planning_dtype_checked = True
        optimizer = self.make_trajectory_optimizer()
        obs = obs.float()
        n_envs = obs.shape[0]
        if warm_start is None or not self._fits(warm_start, n_envs):
            warm_start = optimizer.initial_solution(n_envs)
        if warm_elites is not None and tuple(warm_elites.shape[:3]) != (
            n_envs,
            optimizer.n_kept_elites(),
            self.planner_settings.plan_horizon,
        ):
            warm_elites = None
        network = getattr(self.dynamics, "network", None)
        # Cast (if at all) before the search: the copy serves every call until the weights change.
        weights = network.inference_weights(self.planning_weights()) if isinstance(network, GaussianEnsembleMLP) else None

        def objective(candidates: th.Tensor) -> th.Tensor:
            return self.evaluate_action_sequences(obs, candidates)

        with th.no_grad(), weights or contextlib.nullcontext(), torch_threads(self.planner_settings.planning_threads):
            elites = None if warm_elites is None else warm_elites.to(self.device)
            solution = optimizer.solve(objective, warm_start.to(self.device), elites)
            next_elites = optimizer.shift_elites(solution.elites)
        return PlanResult(solution.plan[:, 0], optimizer.shift(solution.mean), next_elites, solution)

    def plan_disagreement(self, obs: th.Tensor, plan: th.Tensor) -> th.Tensor:
        """
        The members' disagreement along a plan: the state is moved by the members' average predicted mean along the
        plan's actions, and at every step the standard deviation over members of their predicted means (state and
        learned reward) is averaged over dimensions and steps. One forward pass per step for ``n_envs`` states only.

        :param obs: Observations ``[n_envs, obs_dim]``.
        :param plan: Action sequences ``[n_envs, horizon, action_dim]``.
        :return: ``[n_envs]``.
        """
        obs_dim = self.dynamics.obs_dim
        state = obs.float().unsqueeze(0)
        disagreement = th.zeros(obs.shape[0], device=obs.device)
        with th.no_grad():
            for t in range(plan.shape[1]):
                means = self.dynamics.predict(state, plan[None, :, t]).mean
                disagreement = disagreement + means.std(dim=0, unbiased=False).mean(dim=-1)
                state = means[..., :obs_dim].mean(dim=0, keepdim=True)
        return disagreement / plan.shape[1]

    def _fits(self, warm_start: th.Tensor, n_envs: int) -> bool:
        """Whether a warm start matches the batch and the horizon (``load(path, plan_horizon=...)`` may change it)."""
        return tuple(warm_start.shape[:2]) == (n_envs, self.planner_settings.plan_horizon)

    def _check_planning_dtype(self) -> None:
        if self.planner_settings.planning_dtype == "bfloat16" and not bfloat16_matmul_is_fast(self.device):
            warnings.warn(
                f"planning_dtype='bfloat16' on {self.device}, which has no native bfloat16 matrix units (AMX, "
                "AVX512-BF16 or a GPU of compute capability >= 8.0): planning will be slower than with 'float32'.",
                stacklevel=3,
            )

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        assert isinstance(observation, th.Tensor)
        result = self.plan(observation, self.plan_warm_start, self.plan_warm_elites)
        self.plan_warm_start, self.plan_warm_elites = result.warm_start, result.warm_elites
        return result.actions

    def forward(self, obs: th.Tensor, deterministic: bool = False) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def reset_warm_start(self, warm_start: th.Tensor, env_mask: np.ndarray) -> th.Tensor:
        """
        A planner warm start with the rows of ``env_mask`` reset to the middle of the action bounds, e.g. for the
        environments that start a new episode (one of another batch size or horizon is left alone: ``plan``
        re-initialises it).

        :param warm_start: ``[n_envs, horizon, action_dim]``.
        :param env_mask: ``[n_envs]`` booleans.
        :return: The new warm start.
        """
        mask = np.asarray(env_mask, dtype=bool).reshape(-1)
        if not self._fits(warm_start, len(mask)) or not mask.any():
            return warm_start
        fresh = self.make_trajectory_optimizer().initial_solution(len(mask))
        return th.where(th.as_tensor(mask, device=self.device)[:, None, None], fresh, warm_start.to(self.device))

    def reset_warm_elites(self, warm_elites: th.Tensor, env_mask: np.ndarray) -> th.Tensor:
        """
        Carried sequences (iCEM's shifted elites) with those of the environments in ``env_mask`` replaced by the
        middle of the action bounds, the initial mean of a new episode (a duplicate of it is a harmless candidate).

        :param warm_elites: ``[n_envs, n_kept, horizon, action_dim]``.
        :param env_mask: ``[n_envs]`` booleans.
        :return: The new carried sequences.
        """
        mask = np.asarray(env_mask, dtype=bool).reshape(-1)
        if warm_elites.dim() != 4 or warm_elites.shape[0] != len(mask) or warm_elites.shape[1] == 0 or not mask.any():
            return warm_elites
        fresh = self.make_trajectory_optimizer().initial_solution(len(mask)).unsqueeze(1)
        return th.where(th.as_tensor(mask, device=self.device)[:, None, None, None], fresh, warm_elites.to(self.device))

    def _prepare_predict(
        self, observation: np.ndarray | dict[str, np.ndarray], episode_start: np.ndarray | None, deterministic: bool
    ) -> None:
        # The planner's warm start is kept between calls and forgotten where an episode starts (and whenever the batch
        # size changes).
        if episode_start is not None:
            self.plan_warm_start = self.reset_warm_start(self.plan_warm_start, episode_start)
            self.plan_warm_elites = self.reset_warm_elites(self.plan_warm_elites, episode_start)


MlpPolicy = PETSPolicy

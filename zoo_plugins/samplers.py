"""Optuna samplers and converters for ``python -m rl_zoo3.train -optimize`` and ``--trial-id``.

rl-zoo3 calls ``HYPERPARAMS_SAMPLER[algo](trial, n_actions, n_envs, additional_args)`` in its objective and merges the
returned, already converted, constructor kwargs into the YAML's; ``--trial-id`` (and the best trial) go through
``HYPERPARAMS_CONVERTER[algo](trial.params)``, which must map the raw Optuna parameters to the same kwargs. So a sampler
only suggests raw values and calls its converter, and a converter needs nothing but ``trial.params``.

The PETS search space is :data:`PETS_SEARCH_SPACE`, bounded on CPUs by :data:`PETS_FLOPS_BUDGET` (the planning cost of
one action, see :func:`fit_planning_budget`); change it (e.g. from a module passed to ``--gym-packages``, which
rl-zoo3 imports before the study starts) to narrow or widen the search: a list is a categorical choice, a ``(low, high)``
tuple a float range, and ``None`` leaves that hyperparameter at its YAML value.

When the plugin is active, the ``policy_kwargs`` returned here are merged into the YAML's ``policy_kwargs`` (so
environment-specific entries such as ``angle_dims`` survive tuning); see :mod:`zoo_plugins.patches`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

#: Named network sizes (hidden layers of every ensemble member).
NET_ARCHS: dict[str, list[int]] = {
    "small": [64, 64],
    "medium": [200, 200, 200],
    "large": [200, 200, 200, 200],
}

#: Ensemble size assumed by the sampler (n_particles are multiples of it, as TSinf needs).
ENSEMBLE_SIZE = 5

#: Search space of :func:`sample_pets_params`. list: categorical; (low, high): float range; None: not tuned.
PETS_SEARCH_SPACE: dict[str, Any] = {
    "net_arch": ["small", "medium", "large"],
    "learning_rate": (1e-4, 3e-3),  # log-uniform
    "weight_decay_scale": (0.1, 10.0),  # log-uniform, scales the default per-layer profile
    "plan_horizon": [10, 15, 20, 25, 30],
    "popsize": [100, 200, 300, 400, 500],
    "elite_frac": (0.05, 0.2),  # num_elites = round(elite_frac * popsize)
    "n_particles": [ENSEMBLE_SIZE * k for k in (1, 2, 4, 8)],
    "propagation": ["E", "DS", "TS1", "TSinf", "MM"],
    # iCEM (Pinneri et al., 2020) at its defaults beside the CEM; its own settings are passed through by the converter,
    # so they can be tuned too, e.g. PETS_SEARCH_SPACE["icem_noise_beta"] = [0.0, 1.0, 2.0, 3.0],
    # ["icem_population_decay"] = (1.0, 2.0), ["icem_keep_elites_frac"] = (0.0, 0.5), ["icem_execute"] = ["best", "mean"].
    "planner": ["cem", "icem"],
}

#: Planning cost budget of a PETS trial on a CPU, in FLOPs per action (see :func:`planning_flops_per_action`): sampled
#: configurations above it are shrunk to fit (:func:`fit_planning_budget`). 1.5e10 is about 0.5 s per action on one
#: core of a 2-core Xeon (AVX-512, ~30 GFLOP/s reached on these small matrices), so that a 1000-step trial on
#: Pendulum-v1 (800 planned steps, plus training) costs at most about 10 CPU minutes. Raise it (or set None: no bound)
#: from a ``--gym-packages`` module for a faster CPU or a longer study; it does not apply when CUDA is available.
PETS_FLOPS_BUDGET: float | None = 1.5e10

#: Observation and action sizes the estimate assumes for the first and last layers: rl-zoo3's converter sees only the
#: trial's parameters (``--trial-id`` must rebuild the same kwargs), not the environment. HalfCheetah's sizes, an upper
#: bound for the classic control and MuJoCo tasks PETS is tuned on; the hidden layers dominate the cost anyway.
ASSUMED_OBS_DIM = 17
ASSUMED_ACTION_DIM = 6

#: Values the estimate takes for settings the search space does not tune (the PETS defaults).
DEFAULT_CEM_ITERS = 5
DEFAULT_PLAN_HORIZON = 25
DEFAULT_N_PARTICLES = 20
DEFAULT_PROPAGATION = "TSinf"
DEFAULT_ICEM_POPULATION_DECAY = 1.25
DEFAULT_ICEM_KEEP_ELITES_FRAC = 0.3

#: Lowest values :func:`fit_planning_budget` shrinks to, in this order: popsize, then n_particles, then plan_horizon.
MIN_POPSIZE = 50
MIN_PLAN_HORIZON = 5

#: Parameters sampled log-uniformly.
LOG_SCALE = frozenset({"learning_rate", "weight_decay_scale"})

#: Defaults used when a converter input lacks the value another one depends on (the PETS constructor defaults).
DEFAULT_NET_ARCH = [200, 200, 200]
DEFAULT_POPSIZE = 400
#: Weight decay of the first linear layer at scale 1; the last layer gets 4x, linearly in between (2.5e-5 ... 1e-4 for
#: four layers, the half-cheetah profile of the paper and the PETS default).
BASE_WEIGHT_DECAY = 2.5e-5


def weight_decay_profile(n_linear_layers: int, scale: float = 1.0) -> list[float]:
    """Per-layer weight decay: ``scale * 2.5e-5 * (1 ... 4)``, increasing linearly over ``n_linear_layers`` layers."""
    if n_linear_layers < 1:
        raise ValueError(f"n_linear_layers must be >= 1, got {n_linear_layers}")
    if n_linear_layers == 1:
        return [float(f"{BASE_WEIGHT_DECAY * scale:.4g}")]
    return [
        float(f"{BASE_WEIGHT_DECAY * scale * (1.0 + 3.0 * i / (n_linear_layers - 1)):.4g}") for i in range(n_linear_layers)
    ]


def num_elites_for(popsize: int, elite_frac: float) -> int:
    """Number of CEM elites: ``round(elite_frac * popsize)``, at least 2 and at most ``popsize``."""
    return int(min(popsize, max(2, round(elite_frac * popsize))))


def candidates_per_action(
    planner: str, popsize: int, num_elites: int, iterations: int, population_decay: float, keep_elites_frac: float
) -> int:
    """
    Candidate action sequences evaluated per action: ``iterations * popsize`` for the CEM, ``popsize`` for random
    shooting; for iCEM the shrinking populations ``max(ceil(popsize * decay^-i), 2 num_elites)``, the kept elites
    (from the second iteration on; at most, as from the previous step, in the first too) and the mean in the last.
    """
    if planner == "random":
        return popsize
    if planner == "icem":
        kept = math.ceil(keep_elites_frac * num_elites)
        fresh = sum(max(math.ceil(popsize * population_decay**-i), 2 * num_elites) for i in range(iterations))
        return fresh + iterations * kept + 1
    return iterations * popsize


def planning_flops_per_action(
    net_arch: list[int],
    obs_dim: int,
    action_dim: int,
    ensemble_size: int,
    n_particles: int,
    propagation: str,
    n_candidates: int,
    plan_horizon: int,
    learned_reward: bool = True,
) -> float:
    """
    Estimated FLOPs the planner spends on one action: the ensemble's affine layers (a multiply-add counts 2) for every
    member evaluation of every particle of every candidate at every step of the horizon. Activations, sampling and the
    first-step shortcut are left out (they change the count by a few per cent at the sizes tuned).

    Member evaluations per candidate and step: ``n_particles`` for trajectory sampling (``TS1``, ``TSinf``: one member
    per particle), ``n_particles * ensemble_size`` for ``DS`` and ``MM`` (every member predicts every particle),
    ``ensemble_size`` for ``E`` (one particle).

    :param net_arch: Hidden widths.
    :param obs_dim: Observation size.
    :param action_dim: Action size.
    :param ensemble_size: Members.
    :param n_particles: Particles per candidate.
    :param propagation: Propagation method.
    :param n_candidates: Candidates per action (:func:`candidates_per_action`).
    :param plan_horizon: Horizon.
    :param learned_reward: Whether the reward and termination are outputs (counted as the upper bound).
    :return: FLOPs per action.
    """
    out_dim = 2 * (obs_dim + int(learned_reward)) + int(learned_reward)  # means, log-variances, termination logit
    widths = [obs_dim + action_dim, *net_arch, out_dim]
    flops_per_evaluation = sum(2 * w_in * w_out for w_in, w_out in zip(widths[:-1], widths[1:]))
    if propagation in ("TS1", "TSinf"):
        evaluations = n_particles
    elif propagation == "E":
        evaluations = ensemble_size
    else:
        evaluations = n_particles * ensemble_size
    return float(flops_per_evaluation * evaluations * n_candidates * plan_horizon)


def _flops_of(hyperparams: dict[str, Any], net_arch: list[int]) -> float:
    """:func:`planning_flops_per_action` of converted kwargs, with the PETS defaults for what is not given."""
    popsize = int(hyperparams.get("popsize", DEFAULT_POPSIZE))
    n_candidates = candidates_per_action(
        hyperparams.get("planner", "cem"),
        popsize,
        int(hyperparams.get("num_elites", min(popsize, 40))),
        int(hyperparams.get("cem_iters", DEFAULT_CEM_ITERS)),
        float(hyperparams.get("icem_population_decay", DEFAULT_ICEM_POPULATION_DECAY)),
        float(hyperparams.get("icem_keep_elites_frac", DEFAULT_ICEM_KEEP_ELITES_FRAC)),
    )
    return planning_flops_per_action(
        net_arch,
        ASSUMED_OBS_DIM,
        ASSUMED_ACTION_DIM,
        ENSEMBLE_SIZE,
        int(hyperparams.get("n_particles", DEFAULT_N_PARTICLES)),
        hyperparams.get("propagation", DEFAULT_PROPAGATION),
        n_candidates,
        int(hyperparams.get("plan_horizon", DEFAULT_PLAN_HORIZON)),
    )


def planning_budget() -> float | None:
    """The budget that applies here: :data:`PETS_FLOPS_BUDGET`, or None (no bound) where CUDA is available."""
    import torch

    return None if torch.cuda.is_available() else PETS_FLOPS_BUDGET


def fit_planning_budget(
    hyperparams: dict[str, Any], net_arch: list[int], budget: float | None, elite_frac: float | None = None
) -> dict[str, tuple[int, int]]:
    """
    Shrink converted kwargs in place until the planning cost fits ``budget``, deterministically (the same parameters
    always give the same kwargs, as ``--trial-id`` needs): first ``popsize`` (halved, down to :data:`MIN_POPSIZE`;
    ``num_elites`` follows ``elite_frac`` or stays at most ``popsize``), then ``n_particles`` (halved, kept a multiple of
    the ensemble size, down to it), then ``plan_horizon`` (down to :data:`MIN_PLAN_HORIZON`). Only searched values are
    shrunk (a value absent from ``hyperparams`` counts at its PETS default); the search's other values are kept.

    :param hyperparams: Converted kwargs (changed in place).
    :param net_arch: Hidden widths.
    :param budget: FLOPs per action, or None for no bound.
    :param elite_frac: The sampled elite fraction (None: ``num_elites`` is only capped at ``popsize``).
    :return: ``{name: (sampled, used)}`` for every value that was shrunk.
    """
    shrunk: dict[str, tuple[int, int]] = {}
    if budget is None:
        return shrunk

    def shrink(name: str, lowest: int, step: int = 1) -> bool:
        if name not in hyperparams:
            return False  # not searched: the YAML's value is used, which the converter does not know
        value = int(hyperparams[name])
        new = max(lowest, (value // 2) // step * step)
        if new >= value:
            return False
        hyperparams[name] = new
        shrunk[name] = (shrunk.get(name, (value, value))[0], new)
        if name == "popsize":
            elites = hyperparams.get("num_elites", min(value, 40))
            hyperparams["num_elites"] = num_elites_for(new, elite_frac) if elite_frac is not None else min(elites, new)
        return True

    while _flops_of(hyperparams, net_arch) > budget:
        if shrink("popsize", MIN_POPSIZE):
            continue
        if hyperparams.get("propagation", DEFAULT_PROPAGATION) != "E":
            if shrink("n_particles", ENSEMBLE_SIZE, ENSEMBLE_SIZE):
                continue
        if not shrink("plan_horizon", MIN_PLAN_HORIZON):
            break  # nothing left to shrink: the smallest configuration is used as it is
    return shrunk


def convert_pets_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """Map raw Optuna parameters (``trial.params``) to PETS constructor kwargs.

    ``net_arch`` (a name of :data:`NET_ARCHS`) and ``weight_decay_scale`` become ``policy_kwargs`` (``net_arch``,
    ``weight_decay`` with one value per linear layer); ``elite_frac`` becomes ``num_elites``; everything else
    (``learning_rate``, ``plan_horizon``, ``popsize``, ``n_particles``, ``propagation``, ``planner``, ...) is passed
    through. Any subset of the parameters is accepted. On a CPU the planner settings are then shrunk to fit
    :data:`PETS_FLOPS_BUDGET` (:func:`fit_planning_budget`), here so that ``--trial-id`` rebuilds the kwargs the trial
    ran with.
    """
    return _convert_pets_params(sampled_params)[0]


def _convert_pets_params(sampled_params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, tuple[int, int]], list[int]]:
    """:func:`convert_pets_params`, with what the budget shrunk (``{name: (sampled, used)}``) and the hidden widths."""
    hyperparams = dict(sampled_params)
    policy_kwargs: dict[str, Any] = {}

    net_arch = DEFAULT_NET_ARCH
    if "net_arch" in hyperparams:
        name = hyperparams.pop("net_arch")
        if name not in NET_ARCHS:
            raise ValueError(f"Unknown PETS net_arch {name!r}, expected one of {sorted(NET_ARCHS)}")
        net_arch = list(NET_ARCHS[name])
        policy_kwargs["net_arch"] = net_arch

    if "weight_decay_scale" in hyperparams:
        scale = float(hyperparams.pop("weight_decay_scale"))
        policy_kwargs["weight_decay"] = weight_decay_profile(len(net_arch) + 1, scale)

    elite_frac = None
    if "elite_frac" in hyperparams:
        elite_frac = float(hyperparams.pop("elite_frac"))
        popsize = int(hyperparams.get("popsize", DEFAULT_POPSIZE))
        hyperparams["num_elites"] = num_elites_for(popsize, elite_frac)

    for key in ("plan_horizon", "popsize", "n_particles"):
        if key in hyperparams:
            hyperparams[key] = int(hyperparams[key])
    shrunk = fit_planning_budget(hyperparams, net_arch, planning_budget(), elite_frac)

    if policy_kwargs:
        hyperparams["policy_kwargs"] = policy_kwargs
    return hyperparams, shrunk, net_arch


def _suggest_all(trial: optuna.Trial, search_space: dict[str, Any], log_scale: frozenset[str]) -> dict[str, Any]:
    """Suggest every tuned entry of a search space: a tuple is a float range (log-uniform if named in ``log_scale``),
    a list a categorical choice, None leaves the hyperparameter alone."""
    raw: dict[str, Any] = {}
    for name, choices in search_space.items():
        if isinstance(choices, tuple):
            raw[name] = trial.suggest_float(name, float(choices[0]), float(choices[1]), log=name in log_scale)
        elif choices is not None:
            raw[name] = trial.suggest_categorical(name, list(choices))
    return raw


def sample_pets_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
    """Sampler for PETS hyperparameters; returns constructor kwargs (see :func:`convert_pets_params`).

    Tunes the model (network size, learning rate, weight decay) and the planner (horizon, population, elites,
    particles, propagation, CEM or iCEM) over :data:`PETS_SEARCH_SPACE`; on a CPU, a configuration whose planning cost
    is above :data:`PETS_FLOPS_BUDGET` is shrunk to fit, and the trial's user attributes say what changed
    (``planning_budget_shrunk``: ``{name: [sampled, used]}``) and the estimated cost (``planning_flops_per_action``).
    """
    raw = _suggest_all(trial, PETS_SEARCH_SPACE, LOG_SCALE)
    hyperparams, shrunk, net_arch = _convert_pets_params(raw)
    # Derived values, for the study's report (rl-zoo3's samplers do the same)
    if "num_elites" in hyperparams:
        trial.set_user_attr("num_elites", hyperparams["num_elites"])
    # What the budget changed, as {name: [sampled, used]}, and the estimated cost of what runs.
    if shrunk:
        trial.set_user_attr("planning_budget_shrunk", {name: list(values) for name, values in shrunk.items()})
    trial.set_user_attr("planning_flops_per_action", _flops_of(hyperparams, net_arch))
    policy_kwargs = hyperparams.get("policy_kwargs", {})
    for key in ("net_arch", "weight_decay"):
        if key in policy_kwargs:
            trial.set_user_attr(key, policy_kwargs[key])
    return hyperparams


#: Search space of :func:`sample_psdrl_params`, in the same format as :data:`PETS_SEARCH_SPACE`. The prior and noise
#: scales decide how far posterior sampling explores, so they come first; the random-feature prior (width 0: none,
#: the paper's model) and its scales are part of the posterior, and the value fit's weighting of start states decides
#: whether the sampled optimism reaches the start.
PSDRL_SEARCH_SPACE: dict[str, Any] = {
    "learning_rate": (1e-5, 1e-3),
    "reward_prior_scale": (1e-4, 1.0),
    "transition_prior_scale": (1e-5, 1e-1),
    "ridge": (1.0, 1000.0),
    "noise_precision": (1.0, 1000.0),
    "prior_features": [0, 256, 512, 1024, 2048],
    "prior_feature_scale": (1.0, 100.0),
    "prior_lengthscale": (0.1, 2.0),
    "model_iterations": [1, 3, 5, 10],
    "value_iterations": [1, 3, 5, 10, 50],
    "state_weighting": ["visits", "distinct"],
    "resample_schedule": ["round", "episode"],
}

#: PSDRL parameters sampled log-uniformly.
PSDRL_LOG_SCALE = frozenset(
    {
        "learning_rate",
        "reward_prior_scale",
        "transition_prior_scale",
        "ridge",
        "noise_precision",
        "prior_feature_scale",
        "prior_lengthscale",
    }
)
#: PSDRL parameters that belong to the policy (and so to ``policy_kwargs``).
PSDRL_POLICY_PARAMS = (
    "reward_prior_scale",
    "transition_prior_scale",
    "ridge",
    "noise_precision",
    "prior_features",
    "prior_feature_scale",
    "prior_lengthscale",
)
#: PSDRL parameters that are integers (Optuna may hand categorical values back as other types through storage).
PSDRL_INT_PARAMS = ("prior_features", "model_iterations", "value_iterations")


def convert_psdrl_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """Map raw Optuna parameters (``trial.params``) to PSDRL constructor kwargs (posterior settings go to
    ``policy_kwargs``, the rest is passed through). Any subset of the parameters is accepted."""
    hyperparams = {key: int(value) if key in PSDRL_INT_PARAMS else value for key, value in sampled_params.items()}
    policy_kwargs = {key: hyperparams.pop(key) for key in PSDRL_POLICY_PARAMS if key in hyperparams}
    for key, value in policy_kwargs.items():
        if key not in PSDRL_INT_PARAMS:
            policy_kwargs[key] = float(value)
    if policy_kwargs:
        hyperparams["policy_kwargs"] = policy_kwargs
    return hyperparams


def sample_psdrl_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
    """Sampler for PSDRL hyperparameters over :data:`PSDRL_SEARCH_SPACE`; returns constructor kwargs."""
    return convert_psdrl_params(_suggest_all(trial, PSDRL_SEARCH_SPACE, PSDRL_LOG_SCALE))


#: Search space of :func:`sample_dvrl_params`, in the same format as :data:`PETS_SEARCH_SPACE`: the A2C settings, the
#: ELBO weight, the belief (particles, backprop window) and the size of the recurrent state. ``h_dim`` and ``z_dim``
#: go to ``policy_kwargs`` (merged onto the YAML's, so encoder sizes and the emission survive tuning).
DVRL_SEARCH_SPACE: dict[str, Any] = {
    "learning_rate": (1e-5, 2e-3),
    "n_steps": [5, 8, 16],
    "gamma": [0.9, 0.95, 0.98, 0.99, 0.995],
    "ent_coef": (1e-5, 0.1),
    "elbo_coef": (0.01, 1.0),
    "max_grad_norm": [0.3, 0.5, 1.0, 2.0, 5.0],
    "n_particles": [5, 10, 15],
    "multiplier_backprop_length": [1, 2, 5, 10],
    "optimizer": ["rmsprop", "adam"],
    "h_dim": [64, 128, 256],
    "z_dim": [64, 128, 256],
}

#: DVRL parameters sampled log-uniformly.
DVRL_LOG_SCALE = frozenset({"learning_rate", "ent_coef", "elbo_coef"})
#: DVRL parameters that belong to the policy (and so to ``policy_kwargs``).
DVRL_POLICY_PARAMS = ("h_dim", "z_dim")
#: DVRL parameters that are integers (Optuna may hand categorical values back as other types through storage).
DVRL_INT_PARAMS = ("n_steps", "n_particles", "multiplier_backprop_length")


def convert_dvrl_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """Map raw Optuna parameters (``trial.params``) to DVRL constructor kwargs: ``h_dim`` and ``z_dim`` go to
    ``policy_kwargs``, integer settings are cast, the rest is passed through. Any subset of the parameters is accepted."""
    hyperparams = dict(sampled_params)
    policy_kwargs = {key: int(hyperparams.pop(key)) for key in DVRL_POLICY_PARAMS if key in hyperparams}
    for key in DVRL_INT_PARAMS:
        if key in hyperparams:
            hyperparams[key] = int(hyperparams[key])
    if policy_kwargs:
        hyperparams["policy_kwargs"] = policy_kwargs
    return hyperparams


def sample_dvrl_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
    """Sampler for DVRL hyperparameters over :data:`DVRL_SEARCH_SPACE`; returns constructor kwargs."""
    return convert_dvrl_params(_suggest_all(trial, DVRL_SEARCH_SPACE, DVRL_LOG_SCALE))


#: Named network sizes of :func:`sample_bayes_ddpg_params` (actor and critic hidden layers).
BAYES_DDPG_NET_ARCHS: dict[str, list[int]] = {"small": [64, 64], "medium": [256, 256], "big": [400, 300]}

#: Search space of :func:`sample_bayes_ddpg_params`, in the same format as :data:`PETS_SEARCH_SPACE`: the DDPG settings,
#: the variational objective (KL weight, prior scale, initial posterior variance) and how often the Thompson sample is
#: redrawn (``resample_every`` 0 = once per episode).
BAYES_DDPG_SEARCH_SPACE: dict[str, Any] = {
    "learning_rate": (1e-5, 3e-3),
    "gamma": [0.95, 0.98, 0.99, 0.995],
    "batch_size": [64, 128, 256],
    "tau": [0.001, 0.005, 0.01, 0.02],
    "kl_weight": (1e-3, 1.0),
    "prior_std": (0.01, 1.0),
    "posterior_init_log_var": [-12.0, -9.0, -6.0],
    "resample_every": [0, 1, 10, 100],
    "net_arch": ["small", "medium", "big"],
}

#: BayesianDDPG parameters sampled log-uniformly.
BAYES_DDPG_LOG_SCALE = frozenset({"learning_rate", "kl_weight", "prior_std"})
#: BayesianDDPG parameters that belong to the policy (and so to ``policy_kwargs``).
BAYES_DDPG_POLICY_PARAMS = ("prior_std", "posterior_init_log_var")


def convert_bayes_ddpg_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """Map raw Optuna parameters (``trial.params``) to BayesianDDPG constructor kwargs: the prior and initial posterior
    and the named ``net_arch`` go to ``policy_kwargs``, ``resample_every`` 0 means once per episode (None). Any subset of
    the parameters is accepted."""
    hyperparams = dict(sampled_params)
    policy_kwargs: dict[str, Any] = {k: float(hyperparams.pop(k)) for k in BAYES_DDPG_POLICY_PARAMS if k in hyperparams}
    if "net_arch" in hyperparams:
        policy_kwargs["net_arch"] = list(BAYES_DDPG_NET_ARCHS[hyperparams.pop("net_arch")])
    if "resample_every" in hyperparams:
        resample_every = int(hyperparams["resample_every"])
        hyperparams["resample_every"] = resample_every if resample_every > 0 else None
    if "batch_size" in hyperparams:
        hyperparams["batch_size"] = int(hyperparams["batch_size"])
    if policy_kwargs:
        hyperparams["policy_kwargs"] = policy_kwargs
    return hyperparams


def sample_bayes_ddpg_params(
    trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict[str, Any]
) -> dict[str, Any]:  # fmt: skip
    """Sampler for BayesianDDPG hyperparameters over :data:`BAYES_DDPG_SEARCH_SPACE`; returns constructor kwargs."""
    return convert_bayes_ddpg_params(_suggest_all(trial, BAYES_DDPG_SEARCH_SPACE, BAYES_DDPG_LOG_SCALE))


#: Named hidden layers of BayesianDQN's MLP (``CnnPolicy`` ignores ``net_arch`` unless given: its default is per head).
BAYES_DQN_NET_ARCHS: dict[str, list[int]] = {"small": [64, 64], "medium": [256, 256]}

#: Search space of :func:`sample_bayes_dqn_params`, in the format of :data:`PETS_SEARCH_SPACE`. ``kl_weight`` and
#: ``prior_std`` act on the ``"bbb"`` head; ``blr_prior_var`` and the random-feature prior (``prior_features``,
#: ``prior_lengthscale``, ``prior_feature_scale``) on the ``"blr"`` head; ``n_heads``, ``prior_scale`` and
#: ``bootstrap_prob`` on the ``"ensemble"`` head (the other heads ignore them).
BAYES_DQN_SEARCH_SPACE: dict[str, Any] = {
    "head": ["bbb", "blr", "ensemble"],
    "learning_rate": (1e-5, 3e-3),
    "batch_size": [32, 64, 128],
    "gamma": [0.95, 0.98, 0.99, 0.995],
    "target_update_interval": [1, 10, 100, 1000],
    "train_freq": [1, 4, 16],
    "kl_weight": (1e-3, 10.0),
    "prior_std": (0.01, 1.0),
    "blr_prior_var": (1e-4, 1e-1),
    "resample_every": [0, 100, 1000],
    "net_arch": ["small", "medium"],
    "prior_features": [0, 128, 512],
    "prior_lengthscale": (0.1, 10.0),
    "prior_feature_scale": (0.1, 30.0),
    "n_heads": [5, 10, 20],
    "prior_scale": [0.0, 1.0, 3.0, 5.0, 10.0],
    "bootstrap_prob": [0.5, 0.75, 1.0],
}

#: BayesianDQN parameters sampled log-uniformly.
BAYES_DQN_LOG_SCALE = frozenset(
    {"learning_rate", "kl_weight", "prior_std", "blr_prior_var", "prior_lengthscale", "prior_feature_scale"}
)
#: BayesianDQN parameters of every Bayes-by-backprop layer (``policy_kwargs["bayesian_layer_kwargs"]``).
BAYES_DQN_LAYER_PARAMS = ("prior_std", "posterior_init_log_var")
#: BayesianDQN parameters of the policy (``policy_kwargs``), with their types: the random-feature prior of the
#: ``"blr"`` head and the members and prior networks of the ``"ensemble"`` head.
BAYES_DQN_POLICY_PARAMS: dict[str, type] = {
    "prior_features": int,
    "prior_lengthscale": float,
    "prior_feature_scale": float,
    "n_heads": int,
    "prior_scale": float,
}


def convert_bayes_dqn_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """Map raw Optuna parameters (``trial.params``) to BayesianDQN constructor kwargs: the prior of the Bayesian layers
    goes to ``policy_kwargs["bayesian_layer_kwargs"]``; the named ``net_arch``, the random-feature prior and the
    ensemble's size and prior scale to ``policy_kwargs``; ``resample_every`` 0 means a new Thompson sample at every
    episode start. Any subset of the parameters is accepted."""
    hyperparams = dict(sampled_params)
    policy_kwargs: dict[str, Any] = {}
    layer_kwargs = {key: float(hyperparams.pop(key)) for key in BAYES_DQN_LAYER_PARAMS if key in hyperparams}
    if layer_kwargs:
        policy_kwargs["bayesian_layer_kwargs"] = layer_kwargs
    if "net_arch" in hyperparams:
        policy_kwargs["net_arch"] = list(BAYES_DQN_NET_ARCHS[hyperparams.pop("net_arch")])
    for key, kind in BAYES_DQN_POLICY_PARAMS.items():
        if key in hyperparams:
            policy_kwargs[key] = kind(hyperparams.pop(key))
    for key in ("batch_size", "target_update_interval", "train_freq", "resample_every"):
        if key in hyperparams:
            hyperparams[key] = int(hyperparams[key])
    if "bootstrap_prob" in hyperparams:
        hyperparams["bootstrap_prob"] = float(hyperparams["bootstrap_prob"])
    if policy_kwargs:
        hyperparams["policy_kwargs"] = policy_kwargs
    return hyperparams


def sample_bayes_dqn_params(
    trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict[str, Any]
) -> dict[str, Any]:  # fmt: skip
    """Sampler for BayesianDQN hyperparameters over :data:`BAYES_DQN_SEARCH_SPACE`; returns constructor kwargs."""
    return convert_bayes_dqn_params(_suggest_all(trial, BAYES_DQN_SEARCH_SPACE, BAYES_DQN_LOG_SCALE))

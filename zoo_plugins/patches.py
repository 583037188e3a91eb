"""The patches :mod:`zoo_plugins.hook` applies to rl-zoo3 once one of its modules has executed.

Imported only when rl-zoo3 itself is being imported (so torch is loaded anyway). Every patch is idempotent and mutates
rl-zoo3's dicts in place (``train.py``/``enjoy.py`` hold their own references to them). Algorithms come from
:data:`zoo_plugins.registry.REGISTRY`.
"""

from __future__ import annotations

import functools
import inspect
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from zoo_plugins.failures import warn_failure
from zoo_plugins.registry import REGISTRY, find_yaml, resolve

#: Attribute set on every wrapper we install, so a second install never wraps twice.
WRAPPED_MARK = "__sb3_bayes_wrapped__"


def _mark(wrapper: Callable, wrapped: Callable) -> Callable:
    functools.update_wrapper(wrapper, wrapped)
    setattr(wrapper, WRAPPED_MARK, True)
    return wrapper


def _is_ours(func: Any) -> bool:
    return bool(getattr(func, WRAPPED_MARK, False))


# --------------------------------------------------------------------------------------------------- rl_zoo3.utils
def patch_utils(module: Any) -> None:
    """Add our algorithm classes to ``rl_zoo3.utils.ALGOS`` (and ``rl_zoo3.ALGOS`` if it is another dict)."""
    import sys

    targets = [module.ALGOS]
    package = sys.modules.get("rl_zoo3")
    package_algos = getattr(package, "ALGOS", None)
    if isinstance(package_algos, dict) and package_algos is not module.ALGOS:
        targets.append(package_algos)

    failures = []
    for name, entry in REGISTRY.items():
        try:
            algo_class = resolve(entry.algo_class)
        except Exception as exc:
            failures.append(f"{name} ({entry.algo_class}): {type(exc).__name__}: {exc}")
            continue
        for algos in targets:
            current = algos.get(name)
            if current is None:
                algos[name] = algo_class
            elif current is not algo_class:
                failures.append(f"{name}: rl-zoo3 already defines {current!r}, not replaced")
    if failures:
        warn_failure("registering algorithms", "; ".join(failures))


# --------------------------------------------------------------------------------------- rl_zoo3.hyperparams_opt
def merge_policy_kwargs(base: Any, sampled: dict[str, Any]) -> dict[str, Any]:
    """The YAML's ``policy_kwargs`` (dict, rl-zoo3 string, or None) updated with the sampled ones."""
    if base is None:
        return dict(sampled)
    if isinstance(base, str):
        import rl_zoo3.exp_manager

        # rl-zoo3 evaluates policy_kwargs strings in its exp_manager namespace; do the same
        base = eval(base, vars(rl_zoo3.exp_manager))
    if not isinstance(base, dict):
        raise TypeError(f"policy_kwargs must be a dict or a string evaluating to one, got {type(base).__name__}")
    return {**base, **sampled}


#: Attributes set on the Optuna trial while rl-zoo3's objective runs (one trial object per trial, so thread-safe).
BASE_POLICY_KWARGS_ATTR = "_sb3_bayes_base_policy_kwargs"
SAMPLED_NAMES_ATTR = "_sb3_bayes_sampled_names"


def _parameter_names(hyperparams: dict[str, Any]) -> set[str]:
    """The names in sampled hyperparameters, nested dicts included (``policy_kwargs["bayesian_layer_kwargs"]``)."""
    names = set(hyperparams)
    for value in hyperparams.values():
        if isinstance(value, dict):
            names |= _parameter_names(value)
    return names


def _wrap_sampler(sampler: Callable) -> Callable:
    # rl-zoo3's objective does ``kwargs.update(sampled)``, which replaces the YAML's policy_kwargs with the sampled ones
    # and loses environment-specific entries (PETS's angle_dims, DVRL's encoder sizes): merge them instead. The sampler
    # also notes the names it sampled, so that the objective can fail a trial whose *sampled* value is invalid.
    def sample(trial: Any, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
        hyperparams = sampler(trial, n_actions, n_envs, additional_args)
        base = getattr(trial, BASE_POLICY_KWARGS_ATTR, None)
        if base is not None and "policy_kwargs" in hyperparams:
            hyperparams = {**hyperparams, "policy_kwargs": merge_policy_kwargs(base, hyperparams["policy_kwargs"])}
        names = _parameter_names(hyperparams)
        try:
            setattr(trial, SAMPLED_NAMES_ATTR, names)
        except AttributeError:  # pragma: no cover - a trial class with __slots__
            pass
        return hyperparams

    return _mark(sample, sampler)


def patch_hyperparams_opt(module: Any) -> None:
    """Add our samplers/converters to ``HYPERPARAMS_SAMPLER``/``HYPERPARAMS_CONVERTER`` (in place)."""
    failures = []
    for name, entry in REGISTRY.items():
        for dotted, table, wrap in (
            (entry.sampler, module.HYPERPARAMS_SAMPLER, _wrap_sampler),
            (entry.converter, module.HYPERPARAMS_CONVERTER, None),
        ):
            if dotted is None:
                continue
            try:
                func = resolve(dotted)
            except Exception as exc:
                failures.append(f"{name} ({dotted}): {type(exc).__name__}: {exc}")
                continue
            current = table.get(name)
            if current is func or (current is not None and getattr(current, "__wrapped__", None) is func):
                continue  # already registered
            if current is not None:
                failures.append(f"{name}: rl-zoo3 already defines {current!r}, not replaced")
                continue
            table[name] = wrap(func) if wrap is not None else func
    if failures:
        warn_failure("registering samplers", "; ".join(failures))


# ---------------------------------------------------------------------------------------- rl_zoo3.exp_manager
def _wrap_init(init: Callable) -> Callable:
    signature = inspect.signature(init)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            bound = signature.bind(self, *args, **kwargs)
            algo = bound.arguments.get("algo")
            if not bound.arguments.get("config") and algo in REGISTRY:
                path = find_yaml(algo)
                if path is None:
                    warn_failure(f"finding the default YAML of {algo!r}", "no hyperparams file found; pass -conf")
                else:
                    bound.arguments["config"] = str(path)
                    args, kwargs = bound.args[1:], bound.kwargs
        except TypeError:
            pass  # wrong call: let rl-zoo3 raise its own error
        except Exception as exc:
            warn_failure("choosing the default YAML", exc)
        init(self, *args, **kwargs)

    return _mark(__init__, init)


def _wrap_objective(objective: Callable) -> Callable:
    # rl-zoo3 builds the model outside the try that prunes failed trials, so an invalid value makes the constructor's
    # HyperparameterError end the whole study. A value the sampler chose fails that trial only (Optuna marks a NaN
    # result as failed and goes on); an invalid value fixed in the YAML or -params still ends the study, since every
    # trial would fail the same way.
    def objective_(self: Any, trial: Any) -> Any:
        if self.algo not in REGISTRY:
            return objective(self, trial)
        from sb3_bayes.common.validation import HyperparameterError

        setattr(trial, BASE_POLICY_KWARGS_ATTR, self._hyperparams.get("policy_kwargs"))
        try:
            return objective(self, trial)
        except HyperparameterError as error:
            if error.parameter not in getattr(trial, SAMPLED_NAMES_ATTR, set()):
                raise
            print(f"Trial {trial.number} failed: its sampled hyperparameters are invalid: {error}")
            return float("nan")

    return _mark(objective_, objective)


def _wrap_read_hyperparameters(read: Callable) -> Callable:
    # rl-zoo3 tests ``trial_id`` for truth, so it ignores ``--trial-id 0``, and its ``hyperparams.update(trial)`` replaces
    # the YAML's policy_kwargs by the trial's. For our algorithms with a study and a trial id: read the YAML without
    # the trial and -params, then apply the trial (its policy_kwargs merged onto the YAML's) and -params, in rl-zoo3's
    # order.
    def read_hyperparameters(self: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        if not (self.algo in REGISTRY and self.storage and self.study_name and self.trial_id is not None):
            return read(self)
        trial_id, custom = self.trial_id, self.custom_hyperparams
        self.trial_id, self.custom_hyperparams = None, None
        try:
            hyperparams, _ = read(self)
        finally:
            self.trial_id, self.custom_hyperparams = trial_id, custom
        print("Loading from Optuna study...")
        trial_params = dict(self.load_trial(self.storage, self.study_name, trial_id))
        if "policy_kwargs" in trial_params and "policy_kwargs" not in (custom or {}):
            yaml_policy_kwargs = hyperparams.get("policy_kwargs")
            trial_params["policy_kwargs"] = merge_policy_kwargs(yaml_policy_kwargs, trial_params["policy_kwargs"])
            print(f"policy_kwargs (YAML merged with the trial's): {trial_params['policy_kwargs']}")
        hyperparams.update(trial_params)
        hyperparams.update(custom or {})
        return hyperparams, OrderedDict((key, hyperparams[key]) for key in sorted(hyperparams))

    return _mark(read_hyperparameters, read)


def patch_exp_manager(module: Any) -> None:
    """Wrap ``ExperimentManager`` methods: default YAML, sampled values that fail a trial only, ``--trial-id``."""
    manager_cls = module.ExperimentManager
    for attribute, wrap in (
        ("__init__", _wrap_init),
        ("objective", _wrap_objective),
        ("read_hyperparameters", _wrap_read_hyperparameters),
    ):
        current = manager_cls.__dict__.get(attribute)
        if current is None or _is_ours(current):
            continue
        setattr(manager_cls, attribute, wrap(current))


PATCHERS: dict[str, Callable[[Any], None]] = {
    "rl_zoo3.utils": patch_utils,
    "rl_zoo3.hyperparams_opt": patch_hyperparams_opt,
    "rl_zoo3.exp_manager": patch_exp_manager,
}

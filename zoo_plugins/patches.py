"""The patches :mod:`zoo_plugins.hook` applies to rl-zoo3 once one of its modules has executed.

Imported only when rl-zoo3 itself is being imported (so torch is loaded anyway). Every patch is idempotent and mutates
rl-zoo3's dicts in place (``train.py``/``enjoy.py`` hold their own references to them). Algorithms come from
:data:`zoo_plugins.registry.REGISTRY`.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from zoo_plugins.hook import warn_failure
from zoo_plugins.registry import REGISTRY, find_yaml, resolve

#: Attribute set on every wrapper we install, so a second install never wraps twice.
WRAPPED_MARK = "__sb3_bayes_wrapped__"

_local = threading.local()


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


def _wrap_sampler(sampler: Callable) -> Callable:
    def sample(trial: Any, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
        hyperparams = sampler(trial, n_actions, n_envs, additional_args)
        base = getattr(_local, "base_policy_kwargs", None)
        if base is not None and "policy_kwargs" in hyperparams:
            hyperparams = {**hyperparams, "policy_kwargs": merge_policy_kwargs(base, hyperparams["policy_kwargs"])}
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
    def objective_(self: Any, trial: Any) -> Any:
        if self.algo not in REGISTRY:
            return objective(self, trial)
        previous = getattr(_local, "base_policy_kwargs", None)
        _local.base_policy_kwargs = self._hyperparams.get("policy_kwargs")
        try:
            return objective(self, trial)
        finally:
            _local.base_policy_kwargs = previous

    return _mark(objective_, objective)


def _loads_trial(manager: Any) -> bool:
    # ExperimentManager.read_hyperparameters tests ``trial_id`` for truth, so rl-zoo3 ignores ``--trial-id 0``; we do not
    return manager.algo in REGISTRY and bool(manager.storage and manager.study_name) and manager.trial_id is not None


def _wrap_read_hyperparameters(read: Callable) -> Callable:
    def read_hyperparameters(self: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        if not _loads_trial(self):
            return read(self)
        stash: dict[str, Any] = {}
        self.__dict__["_sb3_bayes_trial_stash"] = stash
        try:
            hyperparams, saved_hyperparams = read(self)
            if not self.trial_id:  # trial 0: rl-zoo3 skipped it; same order as rl-zoo3: YAML, trial, then -params
                print("Loading from Optuna study...")
                hyperparams.update(self.load_trial(self.storage, self.study_name, self.trial_id))
                hyperparams.update(self.custom_hyperparams or {})
                saved_hyperparams = OrderedDict((key, hyperparams[key]) for key in sorted(hyperparams))
        finally:
            self.__dict__.pop("_sb3_bayes_trial_stash", None)
        custom = self.custom_hyperparams or {}
        if "policy_kwargs" in stash and "policy_kwargs" not in custom:
            # The trial's policy_kwargs on top of the YAML's (a -params policy_kwargs replaces both, as in rl-zoo3)
            hyperparams["policy_kwargs"] = merge_policy_kwargs(hyperparams.get("policy_kwargs"), stash["policy_kwargs"])
            saved_hyperparams = OrderedDict((key, hyperparams[key]) for key in sorted(hyperparams))
            print(f"policy_kwargs (YAML merged with the trial's): {hyperparams['policy_kwargs']}")
        return hyperparams, saved_hyperparams

    return _mark(read_hyperparameters, read)


def _wrap_load_trial(load_trial: Callable) -> Callable:
    def load_trial_(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        params = load_trial(self, *args, **kwargs)
        stash = self.__dict__.get("_sb3_bayes_trial_stash")
        if stash is not None and isinstance(params, dict) and "policy_kwargs" in params:
            params = dict(params)
            stash["policy_kwargs"] = params.pop("policy_kwargs")
        return params

    return _mark(load_trial_, load_trial)


def patch_exp_manager(module: Any) -> None:
    """Wrap ``ExperimentManager`` methods: default YAML, policy_kwargs merging while tuning and with ``--trial-id``."""
    manager_cls = module.ExperimentManager
    for attribute, wrap in (
        ("__init__", _wrap_init),
        ("objective", _wrap_objective),
        ("read_hyperparameters", _wrap_read_hyperparameters),
        ("load_trial", _wrap_load_trial),
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

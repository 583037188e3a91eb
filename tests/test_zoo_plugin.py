"""The rl-zoo3 plugin: start-up hook, registry, samplers, the unmodified rl-zoo3 commands, and both install modes.

The package must be installed (``pip install -e .`` or ``pip install .``) for the command-line tests: they check that
``python -m rl_zoo3.train --algo pets`` works with nothing but the installed ``sb3_bayes_zoo.pth``.

Layout: start-up hook; registry, samplers and converters; the objective and sampler wrappers (unit tests); the rl-zoo3
commands for every algorithm, driven by one table (:data:`CASES`: train with the default YAML, enjoy, ``-optimize`` on
sqlite with a trial whose sampled value is invalid, ``--trial-id``, ``--trained-agent``, an invalid fixed value); a few
commands specific to one algorithm (PETS's ``-conf`` and journal storage, DVRL's belief, the Atari sections); the
install modes. Every test that starts a subprocess is marked ``slow``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from zoo_plugins import failures, hook, patches, registry, samplers

REPO_ROOT = Path(__file__).resolve().parents[1]
PTH_NAME = "sb3_bayes_zoo.pth"
TRAIN = ["-m", "rl_zoo3.train"]
ENJOY = ["-m", "rl_zoo3.enjoy"]

# Tiny PETS so that the commands run in seconds on 2 cores
TINY_PARAMS = [
    "plan_horizon:5",
    "popsize:20",
    "num_elites:4",
    "cem_iters:2",
    "n_particles:5",
    "n_epochs:1",
    "policy_kwargs:dict(net_arch=[16, 16])",
]
TINY_YAML = {
    "Pendulum-v1": {
        "n_timesteps": 1000,
        "policy": "MlpPolicy",
        "plan_horizon": 5,
        "popsize": 20,
        "num_elites": 4,
        "cem_iters": 2,
        "n_particles": 5,
        "n_epochs": 1,
        "policy_kwargs": "dict(net_arch=[16, 16])",
    }
}
# Imported by the -optimize runs through --gym-packages: shrinks the search space (a documented way to restrict it)
TINY_SPACE_MODULE = """
from zoo_plugins import samplers

samplers.NET_ARCHS["tiny"] = [16, 16]
samplers.PETS_SEARCH_SPACE.update(
    net_arch=["tiny"], plan_horizon=[3, 5], popsize=[16, 20], elite_frac=(0.1, 0.25), n_particles=[5]
)
"""


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(failures.ENV_VAR, None)
    env.update(extra)
    return env


def run_python(
    args: list[str],
    cwd: Path,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
    timeout: float = 240,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` (plugin enabled, ``env`` added); with ``check``, fail with its output when it exits non-zero."""
    proc = subprocess.run(
        [python, *args], cwd=cwd, env=_env(**(env or {})), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        pytest.fail(f"{args} exited {proc.returncode}\n{_output(proc)}")
    return proc


def _output(proc: subprocess.CompletedProcess) -> str:
    return f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"


def run_snippet(
    code: str, cwd: Path, python: str = sys.executable, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return run_python(["-c", textwrap.dedent(code)], cwd=cwd, python=python, env=env)


def read_config(run_dir: Path) -> dict[str, Any]:
    """The hyperparameters rl-zoo3 saved for a run (``<run_dir>/<env>/config.yml``, an OrderedDict dump)."""
    (config_file,) = run_dir.glob("*/config.yml")
    return dict(yaml.load(config_file.read_text(), Loader=yaml.UnsafeLoader))


# ------------------------------------------------------------------------------------------------- start-up hook
def test_pth_installed_in_this_environment() -> None:
    """The installed ``.pth`` is the checkout's one line: it tests SB3_BAYES_ZOO_PLUGIN against the OFF_VALUES of
    :mod:`zoo_plugins.failures` itself, and imports ``zoo_plugins.hook`` only after that test."""
    purelib = Path(sysconfig.get_paths()["purelib"])
    assert (
        purelib / PTH_NAME
    ).is_file(), f"{purelib / PTH_NAME} is missing: install the package first (pip install -e .); the rl-zoo3 commands need it"
    assert (purelib / "sb3_bayes_zoo.start").is_file()
    text = (purelib / PTH_NAME).read_text()
    assert text == (REPO_ROOT / PTH_NAME).read_text(), "the installed .pth is stale: reinstall (pip install -e .)"
    line = text.strip()
    assert "\n" not in line and line.startswith("import ")  # site.py executes only lines that start with "import"
    (statement,) = ast.parse(line).body[1:]  # "import os; <off test> or <install>"
    assert isinstance(statement, ast.Expr) and isinstance(statement.value, ast.BoolOp)
    off_test, install = statement.value.values
    assert isinstance(statement.value.op, ast.Or) and isinstance(off_test, ast.Compare)
    assert isinstance(off_test.ops[0], ast.In) and ast.literal_eval(off_test.comparators[0]) == failures.OFF_VALUES
    assert failures.ENV_VAR in [node.value for node in ast.walk(off_test) if isinstance(node, ast.Constant)]
    assert "zoo_plugins" not in ast.unparse(off_test)
    assert "zoo_plugins.hook" in ast.unparse(install) and ast.unparse(install).endswith(".install()")


@pytest.mark.slow
@pytest.mark.parametrize("value", [None, "1", "yes", "0", "false", " OFF ", "No"])
def test_env_var_decides_before_anything_is_imported(tmp_path: Path, value: str | None) -> None:
    """At start-up the ``.pth`` line imports ``zoo_plugins.hook`` unless SB3_BAYES_ZOO_PLUGIN is 0/false/no/off (any
    case, surrounding blanks ignored); switched off, no module of ``zoo_plugins`` is imported at all."""
    code = "import json, sys; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'zoo_plugins')))"
    env = {} if value is None else {failures.ENV_VAR: value}
    loaded = json.loads(run_python(["-c", code], cwd=tmp_path, env=env).stdout)
    if value is not None and value.strip().lower() in failures.OFF_VALUES:
        assert loaded == []
    else:
        assert "zoo_plugins.hook" in loaded and "zoo_plugins.patches" not in loaded  # patches waits for rl-zoo3


@pytest.mark.slow
def test_startup_is_cheap_and_lazy(tmp_path: Path) -> None:
    """At start-up only the finder is installed: no rl_zoo3, torch, sb3_bayes, numpy or optuna."""
    code = """
        import sys
        import zoo_plugins.hook as hook
        assert hook.install() is True
        finders = [f for f in sys.meta_path if getattr(f, "_sb3_bayes_zoo_finder", False)]
        assert len(finders) == 1, sys.meta_path
        heavy_roots = {"rl_zoo3", "torch", "sb3_bayes", "numpy", "optuna", "yaml"}
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in heavy_roots)
        assert heavy == [], heavy
        print("OK")
    """
    assert "OK" in run_snippet(code, tmp_path).stdout


@pytest.mark.slow
def test_disabled_by_env_var_then_patches_already_imported_modules(tmp_path: Path) -> None:
    """SB3_BAYES_ZOO_PLUGIN=0: rl-zoo3 imports without any ``zoo_plugins`` module and without our algorithms; switched
    on later, ``install()`` patches the rl-zoo3 modules already imported, in place."""
    code = """
        import os, sys
        import rl_zoo3.train, rl_zoo3.enjoy
        from rl_zoo3.utils import ALGOS
        from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER, HYPERPARAMS_CONVERTER
        from rl_zoo3.exp_manager import ExperimentManager

        # The .pth line tested the variable itself: not even the hook was imported
        ours = sorted(m for m in sys.modules if m.split(".")[0] == "zoo_plugins")
        assert ours == [], ours
        import zoo_plugins.hook as hook

        # Switched off: nothing registered, no finder, nothing wrapped
        assert "pets" not in ALGOS and "pets" not in HYPERPARAMS_SAMPLER
        assert not any(getattr(f, "_sb3_bayes_zoo_finder", False) for f in sys.meta_path)
        assert not hasattr(ExperimentManager.__init__, "__sb3_bayes_wrapped__")
        assert hook.install() is False
        assert "pets" not in ALGOS

        # Switched on after rl_zoo3 was imported: patched at once, in place
        os.environ[hook.ENV_VAR] = "1"
        algos_id = id(ALGOS)
        assert hook.install() is True
        import rl_zoo3, rl_zoo3.utils
        assert rl_zoo3.utils.ALGOS is ALGOS and rl_zoo3.ALGOS is ALGOS and id(ALGOS) == algos_id
        from sb3_bayes.pets import PETS
        assert ALGOS["pets"] is PETS
        assert "pets" in HYPERPARAMS_SAMPLER and "pets" in HYPERPARAMS_CONVERTER
        assert getattr(ExperimentManager.__init__, "__sb3_bayes_wrapped__", False)
        print("OK")
    """
    assert "OK" in run_snippet(code, tmp_path, env={failures.ENV_VAR: "0"}).stdout


@pytest.mark.slow
def test_import_failure_becomes_one_warning_and_rl_zoo3_keeps_working(tmp_path: Path) -> None:
    """An algorithm class that cannot be imported is one ZooPluginWarning; rl-zoo3's own algorithms stay."""
    code = """
        import dataclasses, warnings
        import zoo_plugins.registry as registry
        from zoo_plugins.hook import ZooPluginWarning

        registry.REGISTRY["pets"] = dataclasses.replace(registry.REGISTRY["pets"], algo_class="sb3_bayes.no_such_module.PETS")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import rl_zoo3.train, rl_zoo3.enjoy
        ours = [w for w in caught if issubclass(w.category, ZooPluginWarning)]
        assert len(ours) == 1, [str(w.message) for w in ours]
        assert "no_such_module" in str(ours[0].message)
        from rl_zoo3 import ALGOS
        assert "pets" not in ALGOS and "ppo" in ALGOS and "sac" in ALGOS
        print("OK")
    """
    assert "OK" in run_snippet(code, tmp_path).stdout


def _wrapped_layers(func: Any) -> int:
    layers = 0
    while getattr(func, patches.WRAPPED_MARK, False):
        layers += 1
        func = func.__wrapped__
    return layers


def test_install_and_patches_are_idempotent() -> None:
    """Installing and patching again (a .pth may run twice) adds no second finder and wraps nothing twice; rl-zoo3's
    load_trial is left alone (--trial-id is handled by the read_hyperparameters wrapper)."""
    import rl_zoo3
    import rl_zoo3.exp_manager
    import rl_zoo3.hyperparams_opt
    import rl_zoo3.utils

    from sb3_bayes.pets import PETS

    for _ in range(3):
        assert hook.install() is True
        for name in hook.TARGETS:
            hook.patch_module(name, sys.modules[name])
    assert sum(getattr(f, "_sb3_bayes_zoo_finder", False) for f in sys.meta_path) == 1
    assert rl_zoo3.utils.ALGOS["pets"] is PETS and rl_zoo3.ALGOS is rl_zoo3.utils.ALGOS
    manager = rl_zoo3.exp_manager.ExperimentManager
    for attribute in ("__init__", "objective", "read_hyperparameters"):
        assert _wrapped_layers(getattr(manager, attribute)) == 1, attribute
    assert _wrapped_layers(manager.load_trial) == 0
    assert _wrapped_layers(rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER["pets"]) == 1
    assert rl_zoo3.hyperparams_opt.HYPERPARAMS_CONVERTER["pets"] is samplers.convert_pets_params


def test_patch_failure_is_one_warning_and_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """A patch that raises becomes one ZooPluginWarning (not two for the same failure) and never an exception."""
    import rl_zoo3.utils

    def broken(module):
        raise RuntimeError("boom")

    monkeypatch.setattr(failures, "_warned", set())
    monkeypatch.setitem(patches.PATCHERS, "rl_zoo3.utils", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hook.patch_module("rl_zoo3.utils", rl_zoo3.utils)
        hook.patch_module("rl_zoo3.utils", rl_zoo3.utils)  # the same failure again: no second warning
    ours = [w for w in caught if issubclass(w.category, failures.ZooPluginWarning)]
    assert len(ours) == 1 and "boom" in str(ours[0].message)


def test_registry_entry_resolves() -> None:
    """The PETS entry resolves to the class, sampler and converter; its default YAML is found and well formed."""
    from sb3_bayes.pets import PETS

    entry = registry.REGISTRY["pets"]
    assert registry.resolve(entry.algo_class) is PETS
    assert registry.resolve(entry.sampler) is samplers.sample_pets_params
    assert registry.resolve(entry.converter) is samplers.convert_pets_params
    path = registry.find_yaml("pets")
    assert path is not None and path.name == "pets.yml"
    hyperparams = yaml.safe_load(path.read_text())
    for section in hyperparams.values():
        assert "n_timesteps" in section and "policy" in section
    assert registry.find_yaml("ppo") is None


def test_default_yaml_and_conf_wins(tmp_path: Path) -> None:
    """ExperimentManager gets our YAML when no config is given; a given config wins; rl-zoo3's algorithms keep theirs."""
    from rl_zoo3.exp_manager import ExperimentManager

    args = argparse.Namespace()
    manager = ExperimentManager(args, "pets", "Pendulum-v1", str(tmp_path))
    assert Path(manager.config) == registry.find_yaml("pets")
    # positional config is honoured too
    user_conf = str(tmp_path / "mine.yml")
    assert ExperimentManager(args, "pets", "Pendulum-v1", str(tmp_path), config=user_conf).config == user_conf
    # rl-zoo3's own algorithms are untouched
    assert Path(ExperimentManager(args, "ppo", "Pendulum-v1", str(tmp_path)).config).parent.name == "hyperparams"
    assert "rl_zoo3" in ExperimentManager(args, "ppo", "Pendulum-v1", str(tmp_path)).config


# ------------------------------------------------------------------------------------------- samplers / converters
def test_converter_maps_raw_params(monkeypatch: pytest.MonkeyPatch) -> None:
    """The PETS converter maps raw Optuna parameters to constructor kwargs (net_arch, weight-decay profile, elites).
    Without a planning budget (newer samplers shrink costly planner settings on a CPU: not what this test is about)."""
    monkeypatch.setattr(samplers, "PETS_FLOPS_BUDGET", None, raising=False)
    kwargs = samplers.convert_pets_params(
        {
            "net_arch": "large",
            "learning_rate": 1e-3,
            "weight_decay_scale": 1.0,
            "plan_horizon": 20,
            "popsize": 400,
            "elite_frac": 0.1,
            "n_particles": 20,
            "propagation": "TSinf",
        }
    )
    assert kwargs == {
        "learning_rate": 1e-3,
        "plan_horizon": 20,
        "popsize": 400,
        "num_elites": 40,
        "n_particles": 20,
        "propagation": "TSinf",
        "policy_kwargs": {"net_arch": [200, 200, 200, 200], "weight_decay": [2.5e-5, 4.375e-5, 6.25e-5, 8.125e-5, 1e-4]},
    }
    assert samplers.weight_decay_profile(4) == [2.5e-5, 5e-5, 7.5e-5, 1e-4]
    assert samplers.convert_pets_params({"popsize": 10, "elite_frac": 0.01})["num_elites"] == 2
    assert samplers.convert_pets_params({"learning_rate": 3e-4}) == {"learning_rate": 3e-4}
    with pytest.raises(ValueError, match="net_arch"):
        samplers.convert_pets_params({"net_arch": "huge"})


def test_psdrl_converter_puts_posterior_settings_in_policy_kwargs() -> None:
    """The PSDRL converter moves the posterior settings to policy_kwargs and casts the integer ones."""
    kwargs = samplers.convert_psdrl_params(
        {"learning_rate": 1e-3, "ridge": 100, "noise_precision": 10, "prior_features": 512.0, "prior_lengthscale": 0.5,
         "prior_feature_scale": 10, "value_iterations": 50.0, "resample_schedule": "episode"}
    )  # fmt: skip
    assert kwargs == {
        "learning_rate": 1e-3,
        "value_iterations": 50,
        "resample_schedule": "episode",
        "policy_kwargs": {
            "ridge": 100.0,
            "noise_precision": 10.0,
            "prior_features": 512,
            "prior_lengthscale": 0.5,
            "prior_feature_scale": 10.0,
        },
    }
    assert type(kwargs["policy_kwargs"]["prior_features"]) is int and type(kwargs["value_iterations"]) is int


def test_sampler_with_fixed_trial_equals_converter() -> None:
    """The PETS sampler returns exactly what the converter makes of the same raw parameters."""
    params = {
        "net_arch": "small",
        "learning_rate": 5e-4,
        "weight_decay_scale": 2.0,
        "plan_horizon": 15,
        "popsize": 200,
        "elite_frac": 0.15,
        "n_particles": 10,
        "propagation": "DS",
        "planner": "cem",  # searched by newer samplers; a FixedTrial ignores a value nobody suggests
    }
    trial = optuna.trial.FixedTrial(params)
    kwargs = samplers.sample_pets_params(trial, n_actions=1, n_envs=1, additional_args={})
    assert set(trial.params) == set(samplers.PETS_SEARCH_SPACE)
    assert kwargs == samplers.convert_pets_params(trial.params)
    assert kwargs["num_elites"] == 30
    assert kwargs["policy_kwargs"] == {"net_arch": [64, 64], "weight_decay": [5e-5, 1.25e-4, 2e-4]}


def test_sampler_in_a_real_study_round_trips_through_the_converter() -> None:
    """In a real study every sampled trial's stored parameters convert back to the sampled kwargs (what --trial-id
    needs), within the documented bounds, over every propagation method."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    seen_props = set()
    for _ in range(40):
        trial = study.ask()
        kwargs = samplers.sample_pets_params(trial, n_actions=1, n_envs=1, additional_args={})
        # --trial-id rebuilds the same kwargs from the stored raw parameters
        assert samplers.convert_pets_params(study.trials[-1].params) == kwargs
        assert set(trial.params) == set(samplers.PETS_SEARCH_SPACE)
        assert 2 <= kwargs["num_elites"] <= kwargs["popsize"]
        assert kwargs["n_particles"] % samplers.ENSEMBLE_SIZE == 0
        assert 1e-4 <= kwargs["learning_rate"] <= 3e-3
        policy_kwargs = kwargs["policy_kwargs"]
        assert len(policy_kwargs["weight_decay"]) == len(policy_kwargs["net_arch"]) + 1
        assert trial.user_attrs["num_elites"] == kwargs["num_elites"]
        seen_props.add(kwargs["propagation"])
        study.tell(trial, 0.0)
    assert seen_props == {"E", "DS", "TS1", "TSinf", "MM"}


def test_sampled_kwargs_build_a_pets_model() -> None:
    """Sampled PETS kwargs build a model."""
    from sb3_bayes.pets import PETS

    trial = optuna.trial.FixedTrial(
        {
            "net_arch": "small",
            "learning_rate": 1e-3,
            "weight_decay_scale": 1.0,
            "plan_horizon": 10,
            "popsize": 100,
            "elite_frac": 0.1,
            "n_particles": 10,
            "propagation": "TS1",
            "planner": "cem",
        }
    )
    kwargs = samplers.sample_pets_params(trial, n_actions=1, n_envs=1, additional_args={})
    model = PETS("MlpPolicy", "Pendulum-v1", device="cpu", **kwargs)
    assert model.num_elites == 10 and model.popsize == 100 and model.n_particles == 10


def test_policy_kwargs_merge_keeps_yaml_entries() -> None:
    """Sampled policy_kwargs are merged onto the YAML's (a string evaluated as rl-zoo3 does, or a dict) inside rl-zoo3's
    objective, and only there."""
    merged = patches.merge_policy_kwargs("dict(angle_dims=[0], net_arch=[8], activation_fn=nn.ReLU)", {"net_arch": [64]})
    import torch.nn as nn

    assert merged == {"angle_dims": [0], "net_arch": [64], "activation_fn": nn.ReLU}
    assert patches.merge_policy_kwargs(None, {"net_arch": [64]}) == {"net_arch": [64]}
    assert patches.merge_policy_kwargs({"ensemble_size": 5}, {"net_arch": [64]}) == {"ensemble_size": 5, "net_arch": [64]}

    # While rl-zoo3's objective runs for one of our algos, the registered sampler merges onto the YAML's policy_kwargs
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER

    def fixed_trial():
        return optuna.trial.FixedTrial({"net_arch": "small", "weight_decay_scale": 1.0})

    seen = {}

    def objective(self, trial):
        seen.update(HYPERPARAMS_SAMPLER["pets"](trial, 1, 1, {}))
        return 0.0

    manager = argparse.Namespace(algo="pets", _hyperparams={"policy_kwargs": {"angle_dims": [0], "net_arch": [8]}})
    sampled = {"net_arch": [64, 64], "weight_decay": [2.5e-5, 6.25e-5, 1e-4]}
    space = dict(samplers.PETS_SEARCH_SPACE)
    try:
        samplers.PETS_SEARCH_SPACE.clear()
        samplers.PETS_SEARCH_SPACE.update(net_arch=["small"], weight_decay_scale=(0.1, 10.0))
        patches._wrap_objective(objective)(manager, fixed_trial())
        assert seen["policy_kwargs"] == {"angle_dims": [0], **sampled}
        # outside an objective: no merge
        assert HYPERPARAMS_SAMPLER["pets"](fixed_trial(), 1, 1, {})["policy_kwargs"] == sampled
    finally:
        samplers.PETS_SEARCH_SPACE.clear()
        samplers.PETS_SEARCH_SPACE.update(space)


def test_dvrl_converter_and_sampler() -> None:
    """The DVRL converter, sampler, registry entry and YAML sections."""
    raw = {"learning_rate": 1e-4, "n_steps": 8, "n_particles": 15.0, "multiplier_backprop_length": 10, "h_dim": 64,
           "z_dim": 128, "optimizer": "adam", "elbo_coef": 0.5}  # fmt: skip
    kwargs = samplers.convert_dvrl_params(raw)
    assert kwargs == {"learning_rate": 1e-4, "n_steps": 8, "n_particles": 15, "multiplier_backprop_length": 10,
                      "optimizer": "adam", "elbo_coef": 0.5, "policy_kwargs": {"h_dim": 64, "z_dim": 128}}  # fmt: skip
    assert isinstance(kwargs["n_particles"], int)
    assert samplers.convert_dvrl_params({"gamma": 0.9}) == {"gamma": 0.9}

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    sampled = samplers.sample_dvrl_params(trial, 2, 16, {})
    assert set(trial.params) == set(samplers.DVRL_SEARCH_SPACE)
    assert sampled == samplers.convert_dvrl_params(trial.params)
    entry = registry.REGISTRY["dvrl"]
    from sb3_bayes.dvrl import DVRL

    assert registry.resolve(entry.algo_class) is DVRL
    assert registry.resolve(entry.sampler) is samplers.sample_dvrl_params
    assert registry.resolve(entry.converter) is samplers.convert_dvrl_params
    path = registry.find_yaml("dvrl")
    assert path is not None and path.name == "dvrl.yml"
    sections = yaml.load(path.read_text(), Loader=yaml.UnsafeLoader)
    for name in ("default", "atari", "MountainHike-v0", "MountainHikeNoise0p2-v0", "CartPoleNoVel-v1", "PendulumNoVel-v1"):
        assert "n_timesteps" in sections[name] and "policy" in sections[name], name


def test_bayes_ddpg_converter_and_sampler() -> None:
    """The BayesianDDPG converter, sampler, registry entry and YAML sections; sampled kwargs build a model."""
    raw = {"learning_rate": 1e-4, "batch_size": 64.0, "kl_weight": 0.1, "prior_std": 0.2, "posterior_init_log_var": -9,
           "resample_every": 0, "net_arch": "medium", "tau": 0.01}  # fmt: skip
    kwargs = samplers.convert_bayes_ddpg_params(raw)
    assert kwargs == {"learning_rate": 1e-4, "batch_size": 64, "kl_weight": 0.1, "resample_every": None, "tau": 0.01,
                      "policy_kwargs": {"prior_std": 0.2, "posterior_init_log_var": -9.0, "net_arch": [256, 256]}}  # fmt: skip
    assert samplers.convert_bayes_ddpg_params({"resample_every": 10}) == {"resample_every": 10}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    sampled = samplers.sample_bayes_ddpg_params(trial, 1, 1, {})
    assert set(trial.params) == set(samplers.BAYES_DDPG_SEARCH_SPACE)
    assert sampled == samplers.convert_bayes_ddpg_params(trial.params)
    from sb3_bayes.bayes_ddpg import BayesianDDPG

    entry = registry.REGISTRY["bayes_ddpg"]
    assert registry.resolve(entry.algo_class) is BayesianDDPG
    assert registry.resolve(entry.sampler) is samplers.sample_bayes_ddpg_params
    assert registry.resolve(entry.converter) is samplers.convert_bayes_ddpg_params
    path = registry.find_yaml("bayes_ddpg")
    assert path is not None and path.name == "bayes_ddpg.yml"
    sections = yaml.load(path.read_text(), Loader=yaml.UnsafeLoader)
    for name in ("default", "Pendulum-v1", "HalfCheetah-v5", "Hopper-v5", "InvertedPendulum-v5"):
        assert "n_timesteps" in sections[name] and "policy" in sections[name], name
    # the sampled kwargs build a model
    BayesianDDPG("MlpPolicy", "Pendulum-v1", buffer_size=100, **sampled)


def test_bayes_dqn_converter_sampler_registry_and_yaml() -> None:
    """The BayesianDQN converter, sampler, registry entry and YAML sections; sampled kwargs build a model."""
    raw = {"head": "bbb", "learning_rate": 1e-4, "batch_size": 64.0, "kl_weight": 0.1, "prior_std": 0.2,
           "resample_every": 0, "net_arch": "medium", "target_update_interval": 10, "blr_prior_var": 0.01}  # fmt: skip
    kwargs = samplers.convert_bayes_dqn_params(raw)
    assert kwargs == {"head": "bbb", "learning_rate": 1e-4, "batch_size": 64, "kl_weight": 0.1, "resample_every": 0,
                      "target_update_interval": 10, "blr_prior_var": 0.01,
                      "policy_kwargs": {"bayesian_layer_kwargs": {"prior_std": 0.2}, "net_arch": [256, 256]}}  # fmt: skip
    assert samplers.convert_bayes_dqn_params({"train_freq": 4.0}) == {"train_freq": 4}
    # the ensemble head and the BLR head's random-feature prior: their settings go into policy_kwargs
    raw = {"head": "ensemble", "n_heads": 20, "prior_scale": 5.0, "bootstrap_prob": 0.5, "prior_features": 128.0,
           "prior_lengthscale": 0.5, "prior_feature_scale": 3.0}  # fmt: skip
    ensemble_kwargs = {"prior_features": 128, "prior_lengthscale": 0.5, "prior_feature_scale": 3.0, "n_heads": 20,
                       "prior_scale": 5.0}  # fmt: skip
    assert samplers.convert_bayes_dqn_params(raw) == {
        "head": "ensemble",
        "bootstrap_prob": 0.5,
        "policy_kwargs": ensemble_kwargs,
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    sampled = samplers.sample_bayes_dqn_params(trial, 2, 1, {})
    assert set(trial.params) == set(samplers.BAYES_DQN_SEARCH_SPACE)
    assert sampled == samplers.convert_bayes_dqn_params(trial.params)
    from sb3_bayes.bayes_dqn import BayesianDQN

    entry = registry.REGISTRY["bayes_dqn"]
    assert registry.resolve(entry.algo_class) is BayesianDQN
    assert registry.resolve(entry.sampler) is samplers.sample_bayes_dqn_params
    assert registry.resolve(entry.converter) is samplers.convert_bayes_dqn_params
    path = registry.find_yaml("bayes_dqn")
    assert path is not None and path.name == "bayes_dqn.yml"
    sections = yaml.load(path.read_text(), Loader=yaml.UnsafeLoader)
    for name in (
        "default",
        "atari",
        "CartPole-v1",
        "DeepSea-v0",
        "DeepSea5-v0",
        "DeepSea10-v0",
        "DeepSea20-v0",
        "DeepSea30-v0",
    ):
        assert "n_timesteps" in sections[name] and "policy" in sections[name], name
    assert sections["atari"]["policy"] == "CnnPolicy" and sections["atari"]["frame_stack"] == 4
    # the sampled kwargs build a model
    BayesianDQN("MlpPolicy", "CartPole-v1", buffer_size=100, **sampled)


# ---------------------------------------------------------------------------------------- the objective wrapper
#: Raw PETS parameters of the FixedTrials below (a fixed set, independent of what PETS_SEARCH_SPACE holds).
PETS_FIXED_PARAMS = {
    "net_arch": "small",
    "learning_rate": 1e-3,
    "weight_decay_scale": 1.0,
    "plan_horizon": 10,
    "popsize": 100,
    "elite_frac": 0.1,
    "n_particles": 10,
    "propagation": "TS1",
}


def _fake_pets_sampler(trial: Any, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
    """Suggests :data:`PETS_FIXED_PARAMS` and converts them like the PETS sampler: a derived num_elites, policy_kwargs
    with net_arch and weight_decay."""
    raw = {name: trial.suggest_categorical(name, [value]) for name, value in PETS_FIXED_PARAMS.items()}
    return samplers.convert_pets_params(raw)


def _objective_raising(error: Exception) -> Callable[[Any, Any], float]:
    """A stand-in for rl-zoo3's objective: samples like it (through the wrapped sampler), then fails like a constructor
    that rejects one value."""
    sampler = patches._wrap_sampler(_fake_pets_sampler)

    def objective(self: Any, trial: Any) -> float:
        sampler(trial, 1, 1, {})
        raise error

    return objective


def _hyperparameter_error(kind: str, name: str) -> Exception:
    from sb3_bayes.common.validation import HyperparameterTypeError, HyperparameterValueError

    error_class = HyperparameterValueError if kind == "value" else HyperparameterTypeError
    return error_class(f"PETS: {name} must be an integer >= 1, got -3.", name)


@pytest.mark.parametrize(
    "kind, name",
    [("value", "popsize"), ("value", "num_elites"), ("type", "propagation"), ("value", "weight_decay")],
    ids=["sampled", "derived-from-sampled", "type-error", "policy-kwargs-entry"],
)
def test_objective_turns_an_invalid_sampled_value_into_a_failed_trial(kind: str, name: str) -> None:
    """A HyperparameterError naming a value the sampler returned (top level, derived such as num_elites, or a
    policy_kwargs entry) makes the wrapped objective return NaN, which Optuna records as a failed trial."""
    manager = argparse.Namespace(algo="pets", _hyperparams={"policy_kwargs": "dict(ensemble_size=5)"})
    objective = patches._wrap_objective(_objective_raising(_hyperparameter_error(kind, name)))
    trial = optuna.trial.FixedTrial(PETS_FIXED_PARAMS)
    assert math.isnan(objective(manager, trial))
    assert name in getattr(trial, patches.SAMPLED_NAMES_ATTR)
    assert getattr(trial, patches.BASE_POLICY_KWARGS_ATTR) == "dict(ensemble_size=5)"  # the YAML's, for the merge


def test_sampled_names_include_nested_policy_kwargs() -> None:
    """BayesianDQN samples ``prior_std`` inside ``policy_kwargs["bayesian_layer_kwargs"]``: the wrapped sampler records
    names at every depth, so an invalid sampled ``prior_std`` fails its trial instead of ending the study."""

    def nested_sampler(trial: Any, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
        prior_std = trial.suggest_float("prior_std", 0.1, 1.0)
        return {"gamma": 0.99, "policy_kwargs": {"net_arch": [8], "bayesian_layer_kwargs": {"prior_std": prior_std}}}

    trial = optuna.trial.FixedTrial({"prior_std": 0.5})
    patches._wrap_sampler(nested_sampler)(trial, 1, 1, {})
    assert getattr(trial, patches.SAMPLED_NAMES_ATTR) == {
        "gamma",
        "policy_kwargs",
        "net_arch",
        "bayesian_layer_kwargs",
        "prior_std",
    }


@pytest.mark.parametrize("name", ["cem_iters", "ensemble_size"])
def test_objective_reraises_an_invalid_fixed_value(name: str) -> None:
    """A HyperparameterError naming a value that was not sampled (fixed by the YAML or -params, for a top-level
    argument or a policy_kwargs entry) propagates: every trial would fail the same way, so the study must stop."""
    manager = argparse.Namespace(algo="pets", _hyperparams={})
    error = _hyperparameter_error("value", name)
    objective = patches._wrap_objective(_objective_raising(error))
    with pytest.raises(type(error), match=name) as raised:
        objective(manager, optuna.trial.FixedTrial(PETS_FIXED_PARAMS))
    assert raised.value is error


@pytest.mark.parametrize("algo, error", [("pets", ValueError("popsize: NaN loss")), ("ppo", None)], ids=["other-error", "ppo"])
def test_objective_leaves_other_errors_and_algorithms_alone(algo: str, error: Exception | None) -> None:
    """Only a HyperparameterError of one of our algorithms becomes a failed trial: any other error, and every error
    of rl-zoo3's own algorithms, propagates unchanged."""
    error = error if error is not None else _hyperparameter_error("value", "popsize")
    objective = patches._wrap_objective(_objective_raising(error))
    with pytest.raises(type(error)) as raised:
        objective(argparse.Namespace(algo=algo, _hyperparams={}), optuna.trial.FixedTrial(PETS_FIXED_PARAMS))
    assert raised.value is error


def test_failed_trial_does_not_stop_an_optuna_study() -> None:
    """In a real study the NaN of an invalid sampled value is a FAIL and the next trials still run and complete."""
    invalid = _objective_raising(_hyperparameter_error("value", "popsize"))

    def objective(self: Any, trial: Any) -> float:
        if trial.number == 1:
            return invalid(self, trial)
        patches._wrap_sampler(_fake_pets_sampler)(trial, 1, 1, {})
        return 1.0

    manager = argparse.Namespace(algo="pets", _hyperparams={})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna warns about the NaN
        study.optimize(lambda trial: patches._wrap_objective(objective)(manager, trial), n_trials=3)
    state = optuna.trial.TrialState
    assert [t.state for t in study.trials] == [state.COMPLETE, state.FAIL, state.COMPLETE]


# ------------------------------------------------------------------------------ rl-zoo3 commands, every algorithm
@dataclasses.dataclass(frozen=True)
class ZooCase:
    """One algorithm of the registry through the unmodified rl-zoo3 commands, with settings tiny enough for CI.

    :param algo: rl-zoo3 ``--algo`` name (a key of :data:`zoo_plugins.registry.REGISTRY`)
    :param env_id: an environment that has its own section in the algorithm's default YAML
    :param tiny_params: ``-params`` of every run (small networks, few iterations)
    :param train_config: entries of the trained run's ``config.yml`` (YAML section with ``-params`` on top)
    :param space_module: source of a module passed to ``--gym-packages`` that shrinks the search space
    :param invalid_sample: the raw Optuna parameter of an enqueued trial that the constructor rejects: infinity for a
        float range (Optuna uses an enqueued value outside the range, with a warning; the random trials never draw it)
    :param trial_id: the trial loaded by ``--trial-id`` (0, which rl-zoo3 itself ignores, or 2; trial 1 is the failed one)
    :param trial_params: ``-params`` of the ``--trial-id`` run (never a sampled name)
    :param trial_keys: constructor arguments that the trial must set (besides policy_kwargs), checked in config.yml
    :param invalid_fixed: ``(name, value)``: a ``-params`` value the constructor rejects with a HyperparameterValueError
    :param has_replay_buffer: whether ``--save-replay-buffer`` saves one (DVRL is on-policy: no buffer)
    :param gym_packages: modules that register ``env_id``
    :param train_steps: timesteps of the train run (``enjoy_steps``, ``optimize_steps`` per trial, ``trial_steps`` and
        ``continue_steps``: of the enjoy, -optimize, --trial-id and --trained-agent runs)
    """

    algo: str
    env_id: str
    tiny_params: tuple[str, ...]
    train_config: Mapping[str, Any]
    space_module: str
    invalid_sample: Mapping[str, float]
    trial_id: int
    trial_params: tuple[str, ...]
    trial_keys: tuple[str, ...]
    invalid_fixed: tuple[str, str]
    has_replay_buffer: bool = True
    gym_packages: tuple[str, ...] = ()
    train_steps: int = 60
    enjoy_steps: int = 50
    optimize_steps: int = 60
    trial_steps: int = 30
    continue_steps: int = 40

    @property
    def search_space(self) -> dict[str, Any]:
        return getattr(samplers, f"{self.algo.upper()}_SEARCH_SPACE")

    @property
    def converter(self) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return getattr(samplers, f"convert_{self.algo}_params")

    @property
    def space_module_name(self) -> str:
        return f"sb3_bayes_{self.algo}_tiny_space"

    @property
    def run_dir(self) -> str:
        """The first run's folder under a ``-f`` folder."""
        return f"{self.algo}/{self.env_id}_1"

    def args(self, *extra_packages: str) -> list[str]:
        """``--algo``, ``--env``, one thread, and ``--gym-packages`` when needed."""
        packages = [*self.gym_packages, *extra_packages]
        args = ["--algo", self.algo, "--env", self.env_id, "--num-threads", "1"]
        return [*args, "--gym-packages", *packages] if packages else args

    def yaml_policy_kwargs(self) -> dict[str, Any]:
        """The policy_kwargs of the env's section of the default YAML, evaluated as rl-zoo3 does."""
        sections = yaml.load(registry.find_yaml(self.algo).read_text(), Loader=yaml.UnsafeLoader)
        return patches.merge_policy_kwargs(sections[self.env_id].get("policy_kwargs"), {})


CASES = [
    ZooCase(
        algo="pets",
        env_id="Pendulum-v1",
        tiny_params=tuple(TINY_PARAMS),
        train_config={"plan_horizon": 5, "popsize": 20, "learning_rate": 0.001},  # -params over the Pendulum section
        space_module=TINY_SPACE_MODULE,
        invalid_sample={"learning_rate": math.inf},
        trial_id=2,
        trial_params=("cem_iters:2", "n_epochs:1"),
        trial_keys=("plan_horizon", "popsize", "num_elites", "n_particles", "propagation", "learning_rate"),
        invalid_fixed=("popsize", "-3"),
        train_steps=250,  # one random episode (200 steps) and one training round, so that enjoy plans
        optimize_steps=250,
        trial_steps=210,
        continue_steps=60,
    ),
    ZooCase(
        algo="psdrl",
        env_id="DeepSea5-v0",
        gym_packages=("sb3_bayes.envs",),
        tiny_params=("autoencoder_iterations:2", "model_iterations:2", "value_iterations:2", "batch_size:8",
                     "policy_kwargs:dict(latent_dim=8, gru_dim=8, encoder_hidden_dim=16)"),  # fmt: skip
        train_config={"batch_size": 8, "sequence_length": 5},
        space_module="""
from zoo_plugins import samplers

samplers.PSDRL_SEARCH_SPACE.update(prior_features=[0, 16], model_iterations=[1, 2], value_iterations=[1, 2])
""",
        invalid_sample={"ridge": math.inf},  # a policy_kwargs entry, rejected by the policy's constructor
        trial_id=0,
        trial_params=("autoencoder_iterations:1",),
        trial_keys=("learning_rate", "value_iterations", "resample_schedule", "state_weighting"),
        invalid_fixed=("batch_size", "0"),
        enjoy_steps=20,
    ),
    ZooCase(
        algo="dvrl",
        env_id="MountainHikeNoise0p2-v0",
        gym_packages=("sb3_bayes.envs",),
        tiny_params=("n_envs:2", "n_particles:2", "multiplier_backprop_length:2",
                     "policy_kwargs:dict(h_dim=8, z_dim=8, encoder_sizes=[8], action_encoding=4)"),  # fmt: skip
        train_config={"n_particles": 2, "elbo_coef": 0.1},
        space_module="""
from zoo_plugins import samplers

samplers.DVRL_SEARCH_SPACE.update(n_particles=[2, 3], h_dim=[8], z_dim=[8], multiplier_backprop_length=[1, 2], n_steps=[5])
""",
        invalid_sample={"elbo_coef": math.inf},
        trial_id=2,
        trial_params=("n_envs:2",),
        trial_keys=("n_particles", "multiplier_backprop_length", "optimizer", "gamma", "n_steps", "elbo_coef"),
        invalid_fixed=("gamma", "1.5"),
        has_replay_buffer=False,
        train_steps=100,  # multiples of n_envs * n_steps * multiplier_backprop_length (2 * 5 * 2)
        enjoy_steps=80,
        optimize_steps=100,
        trial_steps=40,
    ),
    ZooCase(
        algo="bayes_ddpg",
        env_id="Pendulum-v1",
        tiny_params=("learning_starts:20", "batch_size:16", "buffer_size:1000", "policy_kwargs:dict(net_arch=[8])"),
        train_config={"gamma": 0.98, "learning_starts": 20},
        space_module="""
from zoo_plugins import samplers

samplers.BAYES_DDPG_NET_ARCHS["small"] = [8]
samplers.BAYES_DDPG_SEARCH_SPACE.update(net_arch=["small"], batch_size=[16], resample_every=[0, 10])
""",
        invalid_sample={"prior_std": math.inf},  # a policy_kwargs entry
        trial_id=0,
        trial_params=("buffer_size:1000",),
        trial_keys=("learning_rate", "kl_weight", "resample_every", "gamma", "tau"),
        invalid_fixed=("tau", "1.5"),
    ),
    ZooCase(
        algo="bayes_dqn",
        env_id="CartPole-v1",
        tiny_params=("learning_starts:50", "batch_size:16", "buffer_size:1000", "train_freq:4", "gradient_steps:1",
                     "policy_kwargs:dict(net_arch=[8])"),  # fmt: skip
        train_config={"head": "bbb", "learning_rate": 2.3e-3, "learning_starts": 50},
        space_module="""
from zoo_plugins import samplers

samplers.BAYES_DQN_NET_ARCHS["small"] = [8]
samplers.BAYES_DQN_SEARCH_SPACE.update(net_arch=["small"], batch_size=[16], train_freq=[4])
""",
        invalid_sample={"learning_rate": math.inf},
        trial_id=2,
        trial_params=("buffer_size:1000",),
        trial_keys=("head", "learning_rate", "kl_weight", "resample_every", "gamma", "target_update_interval"),
        invalid_fixed=("batch_size", "0"),
        train_steps=160,  # multiples of train_freq: SB3 collects train_freq steps at a time
        optimize_steps=150,
        trial_steps=100,
        continue_steps=60,
    ),
]
CASE_IDS = [case.algo for case in CASES]
CASES_BY_ALGO = {case.algo: case for case in CASES}
for_every_algorithm = pytest.mark.parametrize("case", CASES, ids=CASE_IDS)


@contextlib.contextmanager
def search_space_as_in_subprocess(case: ZooCase) -> Iterator[None]:
    """Run ``case.space_module`` here too (it edits :mod:`zoo_plugins.samplers` in place, e.g. a named net_arch),
    so that this process converts trial parameters as the subprocesses did; restores every table afterwards."""
    tables = {name: value for name, value in vars(samplers).items() if name.isupper() and isinstance(value, dict)}
    saved = {name: copy.deepcopy(table) for name, table in tables.items()}
    try:
        exec(compile(case.space_module, case.space_module_name, "exec"), {})
        yield
    finally:
        for name, table in tables.items():
            table.clear()
            table.update(saved[name])


def _stored_transitions(replay: Any) -> int:
    """Transitions in a pickled replay buffer: SB3's and PETS's ``size()``, PSDRL's episode replay (saved with the
    state derived from it) ``n_transitions()``."""
    buffer = getattr(replay, "buffer", replay)
    return buffer.n_transitions() if hasattr(buffer, "n_transitions") else buffer.size()


@pytest.fixture(scope="module")
def zoo_train(tmp_path_factory: pytest.TempPathFactory) -> Callable[[ZooCase], tuple[Path, subprocess.CompletedProcess]]:
    """``python -m rl_zoo3.train`` once per algorithm (default YAML, no -conf; ``-params``; ``--save-replay-buffer``),
    shared by the tests that need a trained agent. Returns the work folder (with ``logs/``) and the process."""
    runs: dict[str, tuple[Path, subprocess.CompletedProcess]] = {}

    def train(case: ZooCase) -> tuple[Path, subprocess.CompletedProcess]:
        if case.algo not in runs:
            workdir = tmp_path_factory.mktemp(f"zoo_{case.algo}")
            proc = run_python(
                [*TRAIN, *case.args(), "-n", str(case.train_steps), "-f", "logs", "--seed", "1", "--eval-freq", "-1",
                 "--save-replay-buffer", "-params", *case.tiny_params],
                cwd=workdir,
                check=False,
            )  # fmt: skip
            runs[case.algo] = workdir, proc
        workdir, proc = runs[case.algo]
        if proc.returncode != 0:
            pytest.fail(f"training {case.algo} exited {proc.returncode}\n{_output(proc)}")
        return workdir, proc

    return train


@pytest.mark.slow
@for_every_algorithm
def test_train_uses_the_default_yaml(case: ZooCase, zoo_train: Callable) -> None:
    """``train --algo <ours>`` without -conf reads our YAML (the env's section, ``-params`` on top), trains, saves the
    model and (with ``--save-replay-buffer``) the transitions it collected."""
    workdir, proc = zoo_train(case)
    assert f"Loading hyperparameters from: {registry.find_yaml(case.algo)}" in proc.stdout
    run_dir = workdir / "logs" / case.run_dir
    assert (run_dir / f"{case.env_id}.zip").is_file()
    config = read_config(run_dir)
    assert {key: config[key] for key in case.train_config} == dict(case.train_config)
    if case.has_replay_buffer:
        from stable_baselines3.common.save_util import load_from_pkl

        assert "Saving replay buffer" in proc.stdout
        assert _stored_transitions(load_from_pkl(run_dir / "replay_buffer.pkl")) == case.train_steps
    else:
        assert not (run_dir / "replay_buffer.pkl").exists()


@pytest.mark.slow
@for_every_algorithm
def test_enjoy_runs_the_trained_agent(case: ZooCase, zoo_train: Callable) -> None:
    """``python -m rl_zoo3.enjoy --algo <ours>`` loads the saved model (our class, from ALGOS) and runs it."""
    workdir, _ = zoo_train(case)
    proc = run_python(
        [*ENJOY, *case.args(), "-f", "logs", "--exp-id", "1", "-n", str(case.enjoy_steps), "--no-render"], cwd=workdir
    )
    assert f"Loading logs/{case.run_dir}/{case.env_id}.zip" in proc.stdout


@pytest.mark.slow
@for_every_algorithm
def test_optimize_on_sqlite_fails_only_the_invalid_trial_then_trial_id(case: ZooCase, tmp_path: Path) -> None:
    """``-optimize`` on sqlite with a shrunk search space: a trial whose *sampled* value the constructor rejects
    ends FAIL and the study goes on (the command exits 0); every other trial completes with every parameter of the
    search space. Then ``--trial-id`` (0 too, which rl-zoo3 itself ignores) rebuilds the trial's constructor
    arguments through the converter, its policy_kwargs merged onto the YAML's, ``-params`` on top."""
    (tmp_path / f"{case.space_module_name}.py").write_text(case.space_module)
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    # rl-zoo3 loads an existing study: trial 0 is sampled as usual, trial 1 gets the invalid value, trial 2 is sampled
    study = optuna.create_study(study_name=case.algo, storage=storage, direction="maximize")
    study.enqueue_trial({})
    study.enqueue_trial(dict(case.invalid_sample))
    env = {"PYTHONPATH": str(tmp_path)}
    proc = run_python(
        [*TRAIN, *case.args(case.space_module_name), "-n", str(case.optimize_steps), "-f", "tune_logs", "--seed", "1",
         "-optimize", "--n-trials", "3", "--storage", storage, "--study-name", case.algo, "--sampler", "random",
         "--pruner", "none", "--n-evaluations", "1", "--eval-episodes", "1", "--no-optim-plots",
         "-params", *case.tiny_params],
        cwd=tmp_path,
        env=env,
    )  # fmt: skip
    assert "Trial 1 failed: its sampled hyperparameters are invalid" in proc.stdout
    ((invalid_name, invalid_value),) = case.invalid_sample.items()
    assert re.search(rf"\b{invalid_name} must be .*, got {invalid_value!r}", proc.stdout), proc.stdout[-3000:]
    study = optuna.load_study(study_name=case.algo, storage=storage)
    state = optuna.trial.TrialState
    assert [t.state for t in study.trials] == [state.COMPLETE, state.FAIL, state.COMPLETE], _output(proc)
    assert study.trials[1].params[invalid_name] == invalid_value
    for trial in (study.trials[0], study.trials[2]):
        assert set(trial.params) == set(case.search_space)

    assert not set(case.search_space) & {param.split(":")[0] for param in case.trial_params}
    proc = run_python(
        [*TRAIN, *case.args(case.space_module_name), "-n", str(case.trial_steps), "-f", "trial_logs", "--eval-freq", "-1",
         "--storage", storage, "--study-name", case.algo, "--trial-id", str(case.trial_id), "-params", *case.trial_params],
        cwd=tmp_path,
        env=env,
    )  # fmt: skip
    assert "Loading from Optuna study" in proc.stdout
    config = read_config(tmp_path / "trial_logs" / case.run_dir)
    with search_space_as_in_subprocess(case):
        expected = case.converter(study.trials[case.trial_id].params)
    assert set(case.trial_keys) <= set(expected)
    for key, value in expected.items():
        if key != "policy_kwargs":
            assert config[key] == value, key
    for param in case.trial_params:
        name, value = param.split(":", 1)
        assert config[name] == yaml.safe_load(value), name
    assert config["policy_kwargs"] == {**case.yaml_policy_kwargs(), **expected["policy_kwargs"]}


@pytest.mark.slow
@for_every_algorithm
def test_trained_agent_continues_training(case: ZooCase, zoo_train: Callable) -> None:
    """``train -i <saved model>`` loads the agent and, where ``--save-replay-buffer`` saved one, its replay buffer: the
    continued run's buffer holds the transitions of both runs. rl-zoo3 calls ``learn(n)``, whose default
    ``reset_num_timesteps=True`` restarts the step count, so the saved model counts the second run's steps only."""
    from stable_baselines3.common.save_util import load_from_pkl

    workdir, _ = zoo_train(case)
    trained = workdir / "logs" / case.run_dir / f"{case.env_id}.zip"
    proc = run_python(
        [*TRAIN, *case.args(), "-n", str(case.continue_steps), "-f", "continued", "--seed", "2", "--eval-freq", "-1",
         "--save-replay-buffer", "-i", str(trained), "-params", *case.tiny_params],
        cwd=workdir,
    )  # fmt: skip
    assert "Loading pretrained agent" in proc.stdout
    run_dir = workdir / "continued" / case.run_dir
    algo_class = registry.resolve(registry.REGISTRY[case.algo].algo_class)
    model = algo_class.load(run_dir / f"{case.env_id}.zip", device="cpu")
    assert model.num_timesteps == case.continue_steps
    if case.has_replay_buffer:
        assert "Loading replay buffer" in proc.stdout
        transitions = _stored_transitions(load_from_pkl(run_dir / "replay_buffer.pkl"))
        assert transitions == case.train_steps + case.continue_steps
    else:
        assert "Loading replay buffer" not in proc.stdout and not (run_dir / "replay_buffer.pkl").exists()


@pytest.mark.slow
@for_every_algorithm
def test_invalid_fixed_value_stops_before_training(case: ZooCase, tmp_path: Path) -> None:
    """An invalid ``-params`` value makes ``train`` exit non-zero with the validator's message (naming the parameter
    and the value) when the model is built: nothing is trained or saved."""
    name, value = case.invalid_fixed
    proc = run_python(
        [*TRAIN, *case.args(), "-n", "50", "-f", "logs", "--eval-freq", "-1", "-params", *case.tiny_params, f"{name}:{value}"],
        cwd=tmp_path,
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0, _output(proc)
    assert "HyperparameterValueError" in proc.stderr, _output(proc)
    assert re.search(rf"\b{name} must be [^\n]*, got {re.escape(value)}\.", proc.stderr), _output(proc)
    assert not list(tmp_path.glob("logs/**/*.zip"))


# --------------------------------------------------------------------------- rl-zoo3 commands, one algorithm each
def _optimize_args(storage: str, study: str, n_trials: int) -> list[str]:
    return [
        *TRAIN, *CASES_BY_ALGO["pets"].args(CASES_BY_ALGO["pets"].space_module_name), "-n", "300", "-f", "logs",
        "-optimize", "--n-trials", str(n_trials), "--storage", storage, "--study-name", study, "--sampler", "random",
        "--pruner", "none", "--n-evaluations", "1", "--eval-episodes", "1", "--no-optim-plots",
    ]  # fmt: skip


@pytest.fixture()
def tune_dir(tmp_path: Path) -> Path:
    (tmp_path / f"{CASES_BY_ALGO['pets'].space_module_name}.py").write_text(TINY_SPACE_MODULE)
    return tmp_path


@pytest.mark.slow
def test_invalid_value_in_conf_yaml_stops_before_training(tmp_path: Path) -> None:
    """A string where PETS wants an integer, in the ``-conf`` YAML, makes ``train`` exit non-zero with a
    HyperparameterTypeError naming popsize and the value, before anything is trained or saved."""
    conf = tmp_path / "bad_pets.yml"
    conf.write_text(yaml.safe_dump({"Pendulum-v1": {**TINY_YAML["Pendulum-v1"], "popsize": "ten"}}))
    proc = run_python(
        [*TRAIN, *CASES_BY_ALGO["pets"].args(), "-n", "50", "-f", "logs", "--eval-freq", "-1", "-conf", str(conf)],
        cwd=tmp_path,
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0, _output(proc)
    assert f"Loading hyperparameters from: {conf}" in proc.stdout
    assert "HyperparameterTypeError" in proc.stderr, _output(proc)
    assert re.search(r"\bpopsize must be an integer >= 1, got 'ten' \(str\)", proc.stderr), _output(proc)
    assert not list(tmp_path.glob("logs/**/*.zip"))


@pytest.mark.slow
def test_invalid_fixed_value_ends_an_optimize_run(tune_dir: Path) -> None:
    """During ``-optimize`` an invalid value that was not sampled (``-params batch_size:0``) is not a failed trial
    but an error: every trial would fail the same way, so the command exits non-zero after the first trial."""
    storage = f"sqlite:///{tune_dir / 'tune.db'}"
    proc = run_python(
        [*_optimize_args(storage, "fixed", 2), "-params", *TINY_PARAMS, "batch_size:0"],
        cwd=tune_dir,
        env={"PYTHONPATH": str(tune_dir)},
        check=False,
    )
    assert proc.returncode != 0, _output(proc)
    assert "HyperparameterValueError" in proc.stderr and "batch_size must be" in proc.stderr, _output(proc)
    assert "sampled hyperparameters are invalid" not in proc.stdout
    study = optuna.load_study(study_name="fixed", storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL]


@pytest.mark.slow
def test_optimize_two_workers_share_a_journal_and_conf_wins(tune_dir: Path) -> None:
    """Two -optimize processes share one Optuna journal file (each runs one trial, both complete) and read the -conf
    YAML instead of the default one."""
    conf = tune_dir / "my_pets.yml"
    conf.write_text(yaml.safe_dump(TINY_YAML))
    storage = str(tune_dir / "tune.log")
    procs = []
    for worker in range(2):
        workdir = tune_dir / f"worker{worker}"
        workdir.mkdir()
        procs.append(
            subprocess.Popen(
                [sys.executable, *_optimize_args(storage, "j", 1), "-conf", str(conf)],
                cwd=workdir,
                env=_env(PYTHONPATH=str(tune_dir)),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-6000:]
        assert f"Loading hyperparameters from: {conf}" in output
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    study = optuna.load_study(study_name="j", storage=journal)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2


@pytest.mark.slow
def test_dvrl_saved_model_carries_its_belief(zoo_train: Callable) -> None:
    """The DVRL model trained through rl-zoo3 carries its belief like RecurrentPPO carries LSTM states (what enjoy and
    evaluate_policy use): predict returns (h, z, log-weights, previous action) and episode_start resets it."""
    import gymnasium as gym
    import numpy as np
    import torch as th

    import sb3_bayes.envs  # noqa: F401  (Mountain Hike ids)
    from sb3_bayes.dvrl import DVRL

    case = CASES_BY_ALGO["dvrl"]
    workdir, _ = zoo_train(case)
    model = DVRL.load(workdir / "logs" / case.run_dir / f"{case.env_id}.zip", device="cpu")
    env = gym.make(case.env_id)
    obs, _ = env.reset(seed=0)
    state, start = None, np.array([True])
    for _ in range(5):
        action, state = model.predict(obs[None], state=state, episode_start=start, deterministic=True)
        obs, *_ = env.step(action[0])
        start = np.array([False])
    h, z, log_weights, prev_action = state
    assert h.shape == (1, 2, 8) and z.shape == (1, 2, 8) and log_weights.shape == (1, 2)
    np.testing.assert_allclose(prev_action, action)  # Box actions inside the bounds are fed back unchanged
    th.manual_seed(3)
    reset_action, reset_state = model.predict(obs[None], state=state, episode_start=np.array([True]), deterministic=True)
    th.manual_seed(3)
    fresh_action, fresh_state = model.predict(obs[None], state=None, episode_start=np.array([True]), deterministic=True)
    np.testing.assert_allclose(reset_action, fresh_action)  # episode_start resets the belief
    for reset_part, fresh_part in zip(reset_state, fresh_state):
        np.testing.assert_allclose(reset_part, fresh_part)


# ----------------------------------------------------------------------------------------------- Atari sections
@pytest.mark.slow
def test_psdrl_atari_section_on_pong(tmp_path: Path) -> None:
    """The `atari` section (PSDRLAtariWrapper, CnnPolicy) through rl-zoo3 on Pong, tiny networks, 20-step episodes."""
    proc = run_python(
        ["-m", "rl_zoo3.train", "--algo", "psdrl", "--env", "PongNoFrameskip-v4", "--num-threads", "1", "-n", "50",
         "-f", "logs", "--eval-freq", "-1", "--env-kwargs", "max_episode_steps:80", "-params", "batch_size:2",
         "sequence_length:4", "warmup_freq:20", "value_batch_size:16",
         "policy_kwargs:dict(cnn_depth=4, gru_dim=8, transition_hidden_dim=16, terminal_hidden_dim=16, value_hidden_dim=16)"],
        cwd=tmp_path,
    )  # fmt: skip
    assert "sb3_bayes.common.wrappers.PSDRLAtariWrapper" in proc.stdout
    from sb3_bayes import PSDRL

    model = PSDRL.load(tmp_path / "logs/psdrl/PongNoFrameskip-v4_1/PongNoFrameskip-v4.zip")
    assert model.observation_space.shape == (1, 64, 64) and model.observation_space.dtype == "uint8"
    assert model.n_training_rounds >= 1 and model.policy.transition.latent_dim == 8 * 4 * 4


@pytest.mark.slow
def test_dvrl_flickering_atari_section_on_pong(tmp_path: Path) -> None:
    """The `atari` section (FlickeringAtariWrapper, CnnPolicy, Bernoulli emission) through rl-zoo3, tiny networks."""
    proc = run_python(
        ["-m", "rl_zoo3.train", "--algo", "dvrl", "--env", "PongNoFrameskip-v4", "--num-threads", "1", "-n", "40",
         "-f", "logs", "--eval-freq", "-1", "-params", "n_envs:2", "n_particles:2", "multiplier_backprop_length:2",
         "policy_kwargs:dict(h_dim=8, z_dim=8, cnn_channels=[4, 4, 4], action_encoding=4, emission='bernoulli', "
         "batch_norm=True)"],
        cwd=tmp_path,
    )  # fmt: skip
    assert "sb3_bayes.common.wrappers.FlickeringAtariWrapper" in proc.stdout
    from sb3_bayes import DVRL

    model = DVRL.load(tmp_path / "logs/dvrl/PongNoFrameskip-v4_1/PongNoFrameskip-v4.zip")
    assert model.observation_space.shape == (1, 84, 84) and model.num_timesteps >= 40


@pytest.mark.slow
def test_bayes_dqn_atari_section_on_breakout(tmp_path: Path) -> None:
    """The `atari` section (AtariWrapper, 4 stacked frames, CnnPolicy, BDQN head) through rl-zoo3, a tiny replay."""
    proc = run_python(
        ["-m", "rl_zoo3.train", "--algo", "bayes_dqn", "--env", "BreakoutNoFrameskip-v4", "--num-threads", "1", "-n",
         "64", "-f", "logs", "--eval-freq", "-1", "-params", "buffer_size:200", "learning_starts:32",
         "posterior_update_freq:32", "posterior_window:64", "batch_size:8"],
        cwd=tmp_path,
    )  # fmt: skip
    assert "stable_baselines3.common.atari_wrappers.AtariWrapper" in proc.stdout
    from sb3_bayes import BayesianDQN

    model = BayesianDQN.load(tmp_path / "logs/bayes_dqn/BreakoutNoFrameskip-v4_1/BreakoutNoFrameskip-v4.zip")
    assert model.observation_space.shape == (4, 84, 84) and model.head == "blr"
    assert int(model.policy.blr_posterior.n_observations.sum()) > 0  # the Bayesian last layer was fitted


# ----------------------------------------------------------------------------------------------- install modes
def _copy_checkout(dest: Path) -> Path:
    """Copy the files git would ship (tracked and untracked-but-not-ignored), so build folders stay out of the repo."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO_ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        files = [name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        files = []
    if files:
        for name in files:
            src = REPO_ROOT / name
            if src.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
    else:
        ignore = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", "logs", "*venv*", ".*_cache")
        shutil.copytree(REPO_ROOT, dest, ignore=ignore, dirs_exist_ok=True)
    return dest


def _child_venv(root: Path) -> tuple[str, Path]:
    """A venv with --system-site-packages whose path also sees this environment's packages (torch, rl-zoo3, ...).

    The parent's site-packages is added by a path line, so its ``.pth`` files do not run in the child: only the child's
    own install can activate the plugin there.
    """
    venv_dir = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv_dir)], check=True)
    python = str(venv_dir / "bin" / "python")
    purelib = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    parent_paths = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (purelib / "_sb3_bayes_test_parent.pth").write_text("\n".join(parent_paths) + "\n")
    return python, purelib


@pytest.mark.slow
@pytest.mark.parametrize("editable", [True, False], ids=["editable", "regular"])
def test_install_ships_the_hook(tmp_path: Path, editable: bool) -> None:
    """pip install (editable or regular) of a copy of the checkout into a fresh venv ships the .pth and the YAMLs:
    there, rl-zoo3 knows pets, and zoo_plugins and the YAML come from the installed copy."""
    src = _copy_checkout(tmp_path / "src")
    python, purelib = _child_venv(tmp_path)
    assert not (purelib / PTH_NAME).exists()
    target = ["-e", str(src)] if editable else [str(src)]
    run_python(["-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", *target], cwd=tmp_path, python=python)

    assert (purelib / PTH_NAME).is_file(), sorted(p.name for p in purelib.iterdir())
    assert (purelib / "sb3_bayes_zoo.start").read_text().strip() == "zoo_plugins.hook:install"
    if not editable:
        for yml in (src / "hyperparams").glob("*.yml"):
            assert (purelib / "sb3_bayes" / "hyperparams" / yml.name).is_file(), yml.name
    code = """
        import sys
        from pathlib import Path
        import rl_zoo3.utils as u
        assert "pets" in u.ALGOS, sorted(u.ALGOS)
        import rl_zoo3.enjoy  # argparse choices are built from ALGOS
        import zoo_plugins, sb3_bayes
        from zoo_plugins.registry import find_yaml
        print("ZOO", Path(zoo_plugins.__file__).resolve())
        print("YAML", find_yaml("pets").resolve())
    """
    out = run_snippet(code, tmp_path, python=python).stdout
    zoo_file = Path(out.split("ZOO ")[1].split()[0])
    yaml_file = Path(out.split("YAML ")[1].split()[0])
    installed_in = src.resolve() if editable else purelib.resolve()
    assert installed_in in zoo_file.parents, (zoo_file, installed_in)
    assert installed_in in yaml_file.parents, (yaml_file, installed_in)

"""The rl-zoo3 plugin: start-up hook, registry, samplers, the unmodified rl-zoo3 commands, and both install modes.

The package must be installed (``pip install -e .`` or ``pip install .``) for the command-line tests: they check that
``python -m rl_zoo3.train --algo pets`` works with nothing but the installed ``sb3_bayes_zoo.pth``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import warnings
from pathlib import Path

import optuna
import pytest
import yaml

from zoo_plugins import hook, patches, registry, samplers

REPO_ROOT = Path(__file__).resolve().parents[1]
PTH_NAME = "sb3_bayes_zoo.pth"

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
    env.pop(hook.ENV_VAR, None)
    env.update(extra)
    return env


def run_python(
    args: list[str], cwd: Path, python: str = sys.executable, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` (plugin enabled, ``env`` added); fail with its output when it exits non-zero."""
    proc = subprocess.run(
        [python, *args], cwd=cwd, env=_env(**(env or {})), capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        out, err = proc.stdout[-6000:], proc.stderr[-6000:]
        pytest.fail(f"{args} exited {proc.returncode}\n--- stdout ---\n{out}\n--- stderr ---\n{err}")
    return proc


def run_snippet(
    code: str, cwd: Path, python: str = sys.executable, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return run_python(["-c", textwrap.dedent(code)], cwd=cwd, python=python, env=env)


# ------------------------------------------------------------------------------------------------- start-up hook
def test_pth_installed_in_this_environment():
    purelib = Path(sysconfig.get_paths()["purelib"])
    assert (
        purelib / PTH_NAME
    ).is_file(), f"{purelib / PTH_NAME} is missing: install the package first (pip install -e .); the rl-zoo3 commands need it"
    assert (purelib / "sb3_bayes_zoo.start").is_file()
    line = (purelib / PTH_NAME).read_text().strip()
    assert line.startswith("import ") and "zoo_plugins.hook" in line


def test_startup_is_cheap_and_lazy(tmp_path):
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


def test_disabled_by_env_var_then_patches_already_imported_modules(tmp_path):
    code = """
        import os, sys
        import rl_zoo3.train, rl_zoo3.enjoy
        from rl_zoo3.utils import ALGOS
        from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER, HYPERPARAMS_CONVERTER
        from rl_zoo3.exp_manager import ExperimentManager
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
    assert "OK" in run_snippet(code, tmp_path, env={hook.ENV_VAR: "0"}).stdout


def test_import_failure_becomes_one_warning_and_rl_zoo3_keeps_working(tmp_path):
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


def _wrapped_layers(func) -> int:
    layers = 0
    while getattr(func, patches.WRAPPED_MARK, False):
        layers += 1
        func = func.__wrapped__
    return layers


def test_install_and_patches_are_idempotent():
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
    for attribute in ("__init__", "objective", "read_hyperparameters", "load_trial"):
        assert _wrapped_layers(getattr(manager, attribute)) == 1, attribute
    assert _wrapped_layers(rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER["pets"]) == 1
    assert rl_zoo3.hyperparams_opt.HYPERPARAMS_CONVERTER["pets"] is samplers.convert_pets_params


def test_patch_failure_is_one_warning_and_never_raises(monkeypatch):
    import rl_zoo3.utils

    def broken(module):
        raise RuntimeError("boom")

    monkeypatch.setattr(hook, "_warned", set())
    monkeypatch.setitem(patches.PATCHERS, "rl_zoo3.utils", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hook.patch_module("rl_zoo3.utils", rl_zoo3.utils)
        hook.patch_module("rl_zoo3.utils", rl_zoo3.utils)  # the same failure again: no second warning
    ours = [w for w in caught if issubclass(w.category, hook.ZooPluginWarning)]
    assert len(ours) == 1 and "boom" in str(ours[0].message)


def test_registry_entry_resolves():
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


def test_default_yaml_and_conf_wins(tmp_path):
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
def test_converter_maps_raw_params():
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


def test_psdrl_converter_puts_posterior_settings_in_policy_kwargs():
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


def test_sampler_with_fixed_trial_equals_converter():
    params = {
        "net_arch": "small",
        "learning_rate": 5e-4,
        "weight_decay_scale": 2.0,
        "plan_horizon": 15,
        "popsize": 200,
        "elite_frac": 0.15,
        "n_particles": 10,
        "propagation": "DS",
    }
    trial = optuna.trial.FixedTrial(params)
    kwargs = samplers.sample_pets_params(trial, n_actions=1, n_envs=1, additional_args={})
    assert kwargs == samplers.convert_pets_params(params)
    assert kwargs["num_elites"] == 30
    assert kwargs["policy_kwargs"] == {"net_arch": [64, 64], "weight_decay": [5e-5, 1.25e-4, 2e-4]}


def test_sampler_in_a_real_study_round_trips_through_the_converter():
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


def test_sampled_kwargs_build_a_pets_model():
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
        }
    )
    kwargs = samplers.sample_pets_params(trial, n_actions=1, n_envs=1, additional_args={})
    model = PETS("MlpPolicy", "Pendulum-v1", device="cpu", **kwargs)
    assert model.num_elites == 10 and model.popsize == 100 and model.n_particles == 10


def test_policy_kwargs_merge_keeps_yaml_entries():
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


# --------------------------------------------------------------------------------------------- rl-zoo3 commands
@pytest.fixture(scope="module")
def trained_logs(tmp_path_factory):
    """``python -m rl_zoo3.train --algo pets`` with the default YAML (no -conf) and -params overrides."""
    workdir = tmp_path_factory.mktemp("zoo_train")
    proc = run_python(
        ["-m", "rl_zoo3.train", "--algo", "pets", "--env", "Pendulum-v1", "-n", "300", "-f", "logs", "--seed", "1",
         "--num-threads", "1", "--eval-freq", "-1", "-params", *TINY_PARAMS],
        cwd=workdir,
    )  # fmt: skip
    return workdir, proc


@pytest.mark.slow
def test_train_uses_default_yaml(trained_logs):
    workdir, proc = trained_logs
    assert f"Loading hyperparameters from: {registry.find_yaml('pets')}" in proc.stdout
    run_dir = workdir / "logs" / "pets" / "Pendulum-v1_1"
    assert (run_dir / "Pendulum-v1.zip").is_file()
    config = yaml.load((run_dir / "Pendulum-v1" / "config.yml").read_text(), Loader=yaml.UnsafeLoader)
    config = dict(config)
    assert config["plan_horizon"] == 5 and config["popsize"] == 20


@pytest.mark.slow
def test_enjoy(trained_logs):
    workdir, _ = trained_logs
    proc = run_python(
        ["-m", "rl_zoo3.enjoy", "--algo", "pets", "--env", "Pendulum-v1", "-f", "logs", "-n", "50", "--no-render",
         "--num-threads", "1"],
        cwd=workdir,
    )  # fmt: skip
    assert "Loading" in proc.stdout


def _optimize_args(storage: str, study: str, n_trials: int) -> list[str]:
    return [
        "-m", "rl_zoo3.train", "--algo", "pets", "--env", "Pendulum-v1", "-n", "300", "-f", "logs", "--num-threads", "1",
        "-optimize", "--n-trials", str(n_trials), "--storage", storage, "--study-name", study, "--sampler", "random",
        "--pruner", "none", "--n-evaluations", "1", "--eval-episodes", "1", "--no-optim-plots",
        "--gym-packages", "sb3_bayes_tiny_space",
    ]  # fmt: skip


@pytest.fixture()
def tune_dir(tmp_path):
    (tmp_path / "sb3_bayes_tiny_space.py").write_text(TINY_SPACE_MODULE)
    return tmp_path


@pytest.mark.slow
def test_optimize_sqlite_then_trial_id(tune_dir, monkeypatch):
    monkeypatch.setitem(samplers.NET_ARCHS, "tiny", [16, 16])  # as sb3_bayes_tiny_space does in the subprocesses
    storage = f"sqlite:///{tune_dir / 'tune.db'}"
    run_python([*_optimize_args(storage, "s", 2), "-params", *TINY_PARAMS], cwd=tune_dir, env={"PYTHONPATH": str(tune_dir)})
    study = optuna.load_study(study_name="s", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2, [t.state for t in study.trials]
    assert set(complete[0].params) == set(samplers.PETS_SEARCH_SPACE)

    # --trial-id: the converter rebuilds the kwargs; the trial's policy_kwargs are merged onto the YAML's
    trial = study.trials[1]
    proc = run_python(
        ["-m", "rl_zoo3.train", "--algo", "pets", "--env", "Pendulum-v1", "-n", "250", "-f", "trial_logs", "--num-threads",
         "1", "--eval-freq", "-1", "--storage", storage, "--study-name", "s", "--trial-id", "1",
         "--gym-packages", "sb3_bayes_tiny_space", "-params", "cem_iters:2", "n_epochs:1"],
        cwd=tune_dir,
        env={"PYTHONPATH": str(tune_dir)},
    )  # fmt: skip
    assert "Loading from Optuna study" in proc.stdout
    config_file = tune_dir / "trial_logs/pets/Pendulum-v1_1/Pendulum-v1/config.yml"
    config = dict(yaml.load(config_file.read_text(), Loader=yaml.UnsafeLoader))
    expected = samplers.convert_pets_params(trial.params)
    for key in ("plan_horizon", "popsize", "num_elites", "n_particles", "propagation"):
        assert config[key] == expected[key], key
    yaml_section = yaml.safe_load(registry.find_yaml("pets").read_text())["Pendulum-v1"]
    base = patches.merge_policy_kwargs(yaml_section.get("policy_kwargs"), {})
    assert config["policy_kwargs"] == {**base, **expected["policy_kwargs"]}


@pytest.mark.slow
def test_optimize_two_workers_share_a_journal_and_conf_wins(tune_dir):
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
def test_install_ships_the_hook(tmp_path, editable):
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


# --------------------------------------------------------------------------------------------------------- PSDRL
PSDRL_TINY_PARAMS = [
    "autoencoder_iterations:2",
    "model_iterations:2",
    "value_iterations:2",
    "batch_size:8",
    "policy_kwargs:dict(latent_dim=8, gru_dim=8, encoder_hidden_dim=16)",
]


@pytest.mark.slow
def test_psdrl_train_enjoy_optimize_and_trial_id(tmp_path):
    """The PSDRL registry entry end to end: default YAML (DeepSea section), enjoy, -optimize and --trial-id."""
    common = ["--env", "DeepSea5-v0", "--gym-packages", "sb3_bayes.envs", "--num-threads", "1"]
    proc = run_python(
        ["-m", "rl_zoo3.train", "--algo", "psdrl", *common, "-n", "60", "-f", "logs", "--eval-freq", "-1",
         "-params", *PSDRL_TINY_PARAMS],
        cwd=tmp_path,
    )  # fmt: skip
    assert f"Loading hyperparameters from: {registry.find_yaml('psdrl')}" in proc.stdout
    assert (tmp_path / "logs/psdrl/DeepSea5-v0_1/DeepSea5-v0.zip").is_file()
    run_python(["-m", "rl_zoo3.enjoy", "--algo", "psdrl", *common, "-f", "logs", "-n", "20", "--no-render"], cwd=tmp_path)

    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    run_python(
        ["-m", "rl_zoo3.train", "--algo", "psdrl", *common, "-n", "60", "-f", "tune_logs", "-optimize", "--n-trials", "2",
         "--storage", storage, "--study-name", "p", "--sampler", "random", "--pruner", "none", "--n-evaluations", "1",
         "--eval-episodes", "1", "--no-optim-plots", "-params", *PSDRL_TINY_PARAMS],
        cwd=tmp_path,
    )  # fmt: skip
    study = optuna.load_study(study_name="p", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2 and set(complete[0].params) == set(samplers.PSDRL_SEARCH_SPACE)
    proc = run_python(
        ["-m", "rl_zoo3.train", "--algo", "psdrl", *common, "-n", "30", "-f", "trial_logs", "--eval-freq", "-1",
         "--storage", storage, "--study-name", "p", "--trial-id", "0", "-params", "autoencoder_iterations:1"],
        cwd=tmp_path,
    )  # fmt: skip
    assert "Loading from Optuna study" in proc.stdout
    config = dict(
        yaml.load((tmp_path / "trial_logs/psdrl/DeepSea5-v0_1/DeepSea5-v0/config.yml").read_text(), yaml.UnsafeLoader)
    )
    # Trial 0 (which rl-zoo3 itself would ignore: it tests the id for truth) is loaded too.
    expected = samplers.convert_psdrl_params(study.trials[0].params)
    assert config["resample_schedule"] == expected["resample_schedule"]
    assert config["policy_kwargs"]["ridge"] == expected["policy_kwargs"]["ridge"]


@pytest.mark.slow
def test_psdrl_atari_section_on_pong(tmp_path):
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


# ---------------------------------------------------------------------------------------------------------- DVRL
# Tiny DVRL (2 envs, 2 particles, 8-unit networks) so that each command runs in seconds
DVRL_TINY_PARAMS = [
    "n_envs:2",
    "n_particles:2",
    "multiplier_backprop_length:2",
    "policy_kwargs:dict(h_dim=8, z_dim=8, encoder_sizes=[8], action_encoding=4)",
]
# Imported by the -optimize run through --gym-packages: a tiny search space (sampled values override -params)
DVRL_TINY_SPACE_MODULE = """
import sb3_bayes.envs  # noqa: F401  (Mountain Hike ids)
from zoo_plugins import samplers

samplers.DVRL_SEARCH_SPACE.update(n_particles=[2, 3], h_dim=[8], z_dim=[8], multiplier_backprop_length=[1, 2], n_steps=[5])
"""


@pytest.mark.slow
def test_dvrl_flickering_atari_section_on_pong(tmp_path):
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
def test_bayes_dqn_atari_section_on_breakout(tmp_path):
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


def test_dvrl_converter_and_sampler():
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


@pytest.mark.slow
def test_dvrl_train_enjoy_optimize_and_trial_id(tmp_path):
    """The DVRL registry entry end to end on Mountain Hike: default YAML, enjoy, the belief as recurrent state of the
    saved model, -optimize and --trial-id."""
    import gymnasium as gym
    import numpy as np
    import torch as th

    from sb3_bayes.dvrl import DVRL

    env_id = "MountainHikeNoise0p2-v0"
    common = ["--env", env_id, "--gym-packages", "sb3_bayes.envs", "--num-threads", "1"]
    proc = run_python(
        ["-m", "rl_zoo3.train", "--algo", "dvrl", *common, "-n", "100", "-f", "logs", "--eval-freq", "-1",
         "-params", *DVRL_TINY_PARAMS],
        cwd=tmp_path,
    )  # fmt: skip
    assert f"Loading hyperparameters from: {registry.find_yaml('dvrl')}" in proc.stdout
    model_path = tmp_path / f"logs/dvrl/{env_id}_1/{env_id}.zip"
    assert model_path.is_file()
    config = dict(yaml.load((tmp_path / f"logs/dvrl/{env_id}_1/{env_id}/config.yml").read_text(), yaml.UnsafeLoader))
    assert config["n_particles"] == 2 and config["elbo_coef"] == 0.1  # -params over the Mountain Hike section
    run_python(["-m", "rl_zoo3.enjoy", "--algo", "dvrl", *common, "-f", "logs", "-n", "80", "--no-render"], cwd=tmp_path)

    # The saved model carries its belief like RecurrentPPO carries LSTM states (what enjoy and evaluate_policy use)
    model = DVRL.load(model_path, device="cpu")
    env = gym.make(env_id)
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

    (tmp_path / "sb3_bayes_dvrl_tiny_space.py").write_text(DVRL_TINY_SPACE_MODULE)
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    tune_common = ["--env", env_id, "--gym-packages", "sb3_bayes_dvrl_tiny_space", "--num-threads", "1"]
    run_python(
        ["-m", "rl_zoo3.train", "--algo", "dvrl", *tune_common, "-n", "100", "-f", "tune_logs", "-optimize",
         "--n-trials", "2", "--storage", storage, "--study-name", "d", "--sampler", "random", "--pruner", "none",
         "--n-evaluations", "1", "--eval-episodes", "1", "--no-optim-plots", "-params", *DVRL_TINY_PARAMS],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    study = optuna.load_study(study_name="d", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2 and set(complete[0].params) == set(samplers.DVRL_SEARCH_SPACE)

    proc = run_python(
        ["-m", "rl_zoo3.train", "--algo", "dvrl", *tune_common, "-n", "50", "-f", "trial_logs", "--eval-freq", "-1",
         "--storage", storage, "--study-name", "d", "--trial-id", "1", "-params", "n_envs:2"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert "Loading from Optuna study" in proc.stdout
    config = dict(yaml.load((tmp_path / f"trial_logs/dvrl/{env_id}_1/{env_id}/config.yml").read_text(), yaml.UnsafeLoader))
    expected = samplers.convert_dvrl_params(study.trials[1].params)
    for key in ("n_particles", "multiplier_backprop_length", "optimizer", "gamma", "n_steps"):
        assert config[key] == expected[key], key
    # the trial's h_dim / z_dim are merged onto the Mountain Hike section's policy_kwargs (encoder sizes survive)
    assert config["policy_kwargs"]["h_dim"] == 8 and config["policy_kwargs"]["encoder_sizes"] == [64, 64]


# ---------------------------------------------------------------------------------------------------- BayesianDDPG
# Tiny BayesianDDPG (8-unit networks, small buffer) so that each command runs in seconds
BAYES_DDPG_TINY_PARAMS = ["learning_starts:20", "batch_size:16", "buffer_size:1000", "policy_kwargs:dict(net_arch=[8])"]
# Imported by the -optimize run through --gym-packages: a tiny search space (sampled values override -params)
BAYES_DDPG_TINY_SPACE_MODULE = """
from zoo_plugins import samplers

samplers.BAYES_DDPG_NET_ARCHS["small"] = [8]
samplers.BAYES_DDPG_SEARCH_SPACE.update(net_arch=["small"], batch_size=[16], resample_every=[0, 10])
"""


def test_bayes_ddpg_converter_and_sampler():
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


@pytest.mark.slow
def test_bayes_ddpg_train_enjoy_optimize_and_trial_id(tmp_path):
    """The BayesianDDPG registry entry end to end on Pendulum: default YAML, enjoy (posterior sampling through
    predict's episode_start), -optimize and --trial-id."""
    common = ["--env", "Pendulum-v1", "--num-threads", "1"]
    proc = run_python(
        ["-m", "rl_zoo3.train", "--algo", "bayes_ddpg", *common, "-n", "60", "-f", "logs", "--eval-freq", "-1",
         "-params", *BAYES_DDPG_TINY_PARAMS],
        cwd=tmp_path,
    )  # fmt: skip
    assert f"Loading hyperparameters from: {registry.find_yaml('bayes_ddpg')}" in proc.stdout
    run_dir = tmp_path / "logs/bayes_ddpg/Pendulum-v1_1"
    assert (run_dir / "Pendulum-v1.zip").is_file()
    config = dict(yaml.load((run_dir / "Pendulum-v1/config.yml").read_text(), yaml.UnsafeLoader))
    assert config["gamma"] == 0.98 and config["learning_starts"] == 20  # YAML section, -params on top
    run_python(["-m", "rl_zoo3.enjoy", "--algo", "bayes_ddpg", *common, "-f", "logs", "-n", "50", "--no-render"], cwd=tmp_path)

    (tmp_path / "sb3_bayes_ddpg_tiny_space.py").write_text(BAYES_DDPG_TINY_SPACE_MODULE)
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    tune_common = ["--env", "Pendulum-v1", "--gym-packages", "sb3_bayes_ddpg_tiny_space", "--num-threads", "1"]
    run_python(
        ["-m", "rl_zoo3.train", "--algo", "bayes_ddpg", *tune_common, "-n", "60", "-f", "tune_logs", "-optimize",
         "--n-trials", "2", "--storage", storage, "--study-name", "b", "--sampler", "random", "--pruner", "none",
         "--n-evaluations", "1", "--eval-episodes", "1", "--no-optim-plots", "-params", *BAYES_DDPG_TINY_PARAMS],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    study = optuna.load_study(study_name="b", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2 and set(complete[0].params) == set(samplers.BAYES_DDPG_SEARCH_SPACE)
    proc = run_python(
        ["-m", "rl_zoo3.train", "--algo", "bayes_ddpg", *tune_common, "-n", "30", "-f", "trial_logs", "--eval-freq", "-1",
         "--storage", storage, "--study-name", "b", "--trial-id", "1", "-params", "buffer_size:1000"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert "Loading from Optuna study" in proc.stdout
    config = dict(yaml.load((tmp_path / "trial_logs/bayes_ddpg/Pendulum-v1_1/Pendulum-v1/config.yml").read_text(),
                            yaml.UnsafeLoader))  # fmt: skip
    expected = samplers.convert_bayes_ddpg_params(study.trials[1].params)
    for key in ("learning_rate", "kl_weight", "resample_every", "gamma", "tau"):
        assert config[key] == expected[key], key
    assert config["policy_kwargs"]["prior_std"] == expected["policy_kwargs"]["prior_std"]


# ----------------------------------------------------------------------------------------------------- BayesianDQN
# Tiny BayesianDQN (8-unit MLP, small buffer, early learning) so that each command runs in seconds
BAYES_DQN_TINY_PARAMS = ["learning_starts:50", "batch_size:16", "buffer_size:1000", "train_freq:4", "gradient_steps:1",
                         "policy_kwargs:dict(net_arch=[8])"]  # fmt: skip
# Imported by the -optimize run through --gym-packages: a tiny search space (sampled values override -params)
BAYES_DQN_TINY_SPACE_MODULE = """
from zoo_plugins import samplers

samplers.BAYES_DQN_NET_ARCHS["small"] = [8]
samplers.BAYES_DQN_SEARCH_SPACE.update(net_arch=["small"], batch_size=[16], train_freq=[4])
"""


def test_bayes_dqn_converter_sampler_registry_and_yaml():
    raw = {"head": "bbb", "learning_rate": 1e-4, "batch_size": 64.0, "kl_weight": 0.1, "prior_std": 0.2,
           "resample_every": 0, "net_arch": "medium", "target_update_interval": 10, "blr_prior_var": 0.01}  # fmt: skip
    kwargs = samplers.convert_bayes_dqn_params(raw)
    assert kwargs == {"head": "bbb", "learning_rate": 1e-4, "batch_size": 64, "kl_weight": 0.1, "resample_every": 0,
                      "target_update_interval": 10, "blr_prior_var": 0.01,
                      "policy_kwargs": {"bayesian_layer_kwargs": {"prior_std": 0.2}, "net_arch": [256, 256]}}  # fmt: skip
    assert samplers.convert_bayes_dqn_params({"train_freq": 4.0}) == {"train_freq": 4}
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
    for name in ("default", "atari", "CartPole-v1", "DeepSea5-v0", "DeepSea10-v0", "DeepSea20-v0", "DeepSea30-v0"):
        assert "n_timesteps" in sections[name] and "policy" in sections[name], name
    assert sections["atari"]["policy"] == "CnnPolicy" and sections["atari"]["frame_stack"] == 4
    # the sampled kwargs build a model
    BayesianDQN("MlpPolicy", "CartPole-v1", buffer_size=100, **sampled)


@pytest.mark.slow
def test_bayes_dqn_train_enjoy_optimize_and_trial_id(tmp_path):
    """The BayesianDQN registry entry end to end on CartPole: default YAML, enjoy (Thompson samples redrawn through
    predict's episode_start), -optimize and --trial-id."""
    common = ["--env", "CartPole-v1", "--num-threads", "1"]
    proc = run_python(
        ["-m", "rl_zoo3.train", "--algo", "bayes_dqn", *common, "-n", "200", "-f", "logs", "--eval-freq", "-1",
         "-params", *BAYES_DQN_TINY_PARAMS],
        cwd=tmp_path,
    )  # fmt: skip
    assert f"Loading hyperparameters from: {registry.find_yaml('bayes_dqn')}" in proc.stdout
    run_dir = tmp_path / "logs/bayes_dqn/CartPole-v1_1"
    assert (run_dir / "CartPole-v1.zip").is_file()
    config = dict(yaml.load((run_dir / "CartPole-v1/config.yml").read_text(), yaml.UnsafeLoader))
    assert config["head"] == "bbb" and config["learning_rate"] == 2.3e-3 and config["learning_starts"] == 50
    run_python(["-m", "rl_zoo3.enjoy", "--algo", "bayes_dqn", *common, "-f", "logs", "-n", "50", "--no-render"], cwd=tmp_path)

    (tmp_path / "sb3_bayes_dqn_tiny_space.py").write_text(BAYES_DQN_TINY_SPACE_MODULE)
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    tune_common = ["--env", "CartPole-v1", "--gym-packages", "sb3_bayes_dqn_tiny_space", "--num-threads", "1"]
    run_python(
        ["-m", "rl_zoo3.train", "--algo", "bayes_dqn", *tune_common, "-n", "200", "-f", "tune_logs", "-optimize",
         "--n-trials", "2", "--storage", storage, "--study-name", "q", "--sampler", "random", "--pruner", "none",
         "--n-evaluations", "1", "--eval-episodes", "1", "--no-optim-plots", "-params", *BAYES_DQN_TINY_PARAMS],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    study = optuna.load_study(study_name="q", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2 and set(complete[0].params) == set(samplers.BAYES_DQN_SEARCH_SPACE)
    proc = run_python(
        ["-m", "rl_zoo3.train", "--algo", "bayes_dqn", *tune_common, "-n", "100", "-f", "trial_logs", "--eval-freq", "-1",
         "--storage", storage, "--study-name", "q", "--trial-id", "1", "-params", "buffer_size:1000"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert "Loading from Optuna study" in proc.stdout
    config = dict(yaml.load((tmp_path / "trial_logs/bayes_dqn/CartPole-v1_1/CartPole-v1/config.yml").read_text(),
                            yaml.UnsafeLoader))  # fmt: skip
    expected = samplers.convert_bayes_dqn_params(study.trials[1].params)
    for key in ("head", "learning_rate", "kl_weight", "resample_every", "gamma", "target_update_interval"):
        assert config[key] == expected[key], key
    assert config["policy_kwargs"]["bayesian_layer_kwargs"] == expected["policy_kwargs"]["bayesian_layer_kwargs"]

"""The one registry of sb3-bayes algorithms exposed to rl-zoo3.

Adding an algorithm to ``python -m rl_zoo3.train --algo <name>`` (and enjoy, ``-optimize``, ``--trial-id``) is one entry
here, plus its sampler/converter in :mod:`zoo_plugins.samplers` and its ``hyperparams/<name>.yml``.

Everything is named by dotted path and resolved lazily, so importing this module costs nothing (no torch, no optuna).
"""

from __future__ import annotations

import importlib.util
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class AlgoEntry:
    """How one sb3-bayes algorithm plugs into rl-zoo3.

    :param algo_class: dotted path of the algorithm class (``ALGOS[name]``)
    :param sampler: dotted path of the Optuna sampler ``(trial, n_actions, n_envs, additional_args) -> kwargs``
        (``HYPERPARAMS_SAMPLER[name]``), or None when it cannot be tuned
    :param converter: dotted path of the converter ``(trial.params) -> kwargs`` (``HYPERPARAMS_CONVERTER[name]``,
        used by ``--trial-id``), or None
    :param yaml: file name of the default rl-zoo3 YAML (in ``sb3_bayes/hyperparams/``, else the checkout's
        ``hyperparams/``), used when no ``-conf`` is given
    """

    algo_class: str
    sampler: str | None = None
    converter: str | None = None
    yaml: str | None = None


REGISTRY: dict[str, AlgoEntry] = {
    "pets": AlgoEntry(
        algo_class="sb3_bayes.pets.PETS",
        sampler="zoo_plugins.samplers.sample_pets_params",
        converter="zoo_plugins.samplers.convert_pets_params",
        yaml="pets.yml",
    ),
    "psdrl": AlgoEntry(
        algo_class="sb3_bayes.psdrl.PSDRL",
        sampler="zoo_plugins.samplers.sample_psdrl_params",
        converter="zoo_plugins.samplers.convert_psdrl_params",
        yaml="psdrl.yml",
    ),
    "dvrl": AlgoEntry(
        algo_class="sb3_bayes.dvrl.DVRL",
        sampler="zoo_plugins.samplers.sample_dvrl_params",
        converter="zoo_plugins.samplers.convert_dvrl_params",
        yaml="dvrl.yml",
    ),
    "bayes_ddpg": AlgoEntry(
        algo_class="sb3_bayes.bayes_ddpg.BayesianDDPG",
        sampler="zoo_plugins.samplers.sample_bayes_ddpg_params",
        converter="zoo_plugins.samplers.convert_bayes_ddpg_params",
        yaml="bayes_ddpg.yml",
    ),
    "bayes_dqn": AlgoEntry(
        algo_class="sb3_bayes.bayes_dqn.BayesianDQN",
        sampler="zoo_plugins.samplers.sample_bayes_dqn_params",
        converter="zoo_plugins.samplers.convert_bayes_dqn_params",
        yaml="bayes_dqn.yml",
    ),
}


def resolve(dotted: str) -> Any:
    """Import ``pkg.mod.attr`` (or ``pkg.mod:attr``) and return the attribute."""
    return pkgutil.resolve_name(dotted)


def yaml_dirs() -> list[Path]:
    """Folders searched for default YAMLs, in order: the installed package data, then the checkout's ``hyperparams/``."""
    dirs: list[Path] = []
    spec = importlib.util.find_spec("sb3_bayes")
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(location) / "hyperparams" for location in spec.submodule_search_locations]
    # Editable install or plain checkout: <repo>/zoo_plugins/registry.py -> <repo>/hyperparams
    dirs.append(Path(__file__).resolve().parents[1] / "hyperparams")
    return dirs


def find_yaml(algo: str) -> Path | None:
    """Path of the default YAML of a registered algorithm, or None (not registered, no YAML, or file missing)."""
    entry = REGISTRY.get(algo)
    if entry is None or entry.yaml is None:
        return None
    for folder in yaml_dirs():
        candidate = folder / entry.yaml
        if candidate.is_file():
            return candidate
    return None

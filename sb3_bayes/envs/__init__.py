"""Environments of the papers and what is known about standard environments' rewards."""

from sb3_bayes.envs.deep_sea import DeepSeaEnv, register_deep_sea_envs
from sb3_bayes.envs.known_rewards import KNOWN_MODEL_SPECS, KnownModelSpec, get_known_spec

# Gymnasium ids DeepSea-v0 and DeepSea{N}-v0 (idempotent: ids already registered are left alone)
register_deep_sea_envs()

__all__ = ["KNOWN_MODEL_SPECS", "DeepSeaEnv", "KnownModelSpec", "get_known_spec", "register_deep_sea_envs"]

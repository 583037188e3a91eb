"""Environments of the papers and what is known about standard environments' rewards."""

from sb3_bayes.envs.deep_sea import DeepSeaEnv, register_deep_sea_envs
from sb3_bayes.envs.known_rewards import KNOWN_MODEL_SPECS, KnownModelSpec, get_known_spec
from sb3_bayes.envs.mountain_hike import MountainHikeEnv, register_mountain_hike_envs
from sb3_bayes.envs.noisy_position import NoisyPositionCartPoleEnv, register_noisy_position_envs

# Gymnasium ids DeepSea-v0 and DeepSea{N}-v0 (idempotent: ids already registered are left alone)
register_deep_sea_envs()
# MountainHike-v0 and MountainHikeNoise<level>-v0 (idempotent as well)
register_mountain_hike_envs()
# NoisyPositionCartPole-v0 and NoisyPositionCartPoleNoise<level>-v0 (idempotent as well)
register_noisy_position_envs()

__all__ = [
    "KNOWN_MODEL_SPECS",
    "DeepSeaEnv",
    "KnownModelSpec",
    "MountainHikeEnv",
    "NoisyPositionCartPoleEnv",
    "get_known_spec",
    "register_deep_sea_envs",
    "register_mountain_hike_envs",
    "register_noisy_position_envs",
]

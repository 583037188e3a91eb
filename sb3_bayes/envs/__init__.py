"""Environments of the papers and what is known about standard environments' rewards."""

from sb3_bayes.envs.known_rewards import KNOWN_MODEL_SPECS, KnownModelSpec, get_known_spec

__all__ = ["KNOWN_MODEL_SPECS", "KnownModelSpec", "get_known_spec"]

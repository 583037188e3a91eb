from sb3_bayes.psdrl.policies import CnnPolicy, MlpPolicy, PSDRLCnnPolicy, PSDRLPolicy
from sb3_bayes.psdrl.psdrl import PSDRL

__all__ = ["PSDRL", "CnnPolicy", "MlpPolicy", "PSDRLCnnPolicy", "PSDRLPolicy"]

from sb3_bayes.dvrl.dvrl import DVRL
from sb3_bayes.dvrl.policies import CnnPolicy, DVRLPolicy, MlpPolicy

__all__ = ["DVRL", "CnnPolicy", "DVRLPolicy", "MlpPolicy"]

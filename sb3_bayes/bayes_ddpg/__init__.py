from sb3_bayes.bayes_ddpg.bayes_ddpg import BayesianDDPG
from sb3_bayes.bayes_ddpg.policies import BayesianDDPGPolicy, CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["BayesianDDPG", "BayesianDDPGPolicy", "CnnPolicy", "MlpPolicy", "MultiInputPolicy"]

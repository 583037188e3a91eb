from sb3_bayes.bayes_dqn.bayes_dqn import BayesianDQN
from sb3_bayes.bayes_dqn.policies import BayesianDQNPolicy, BayesianQNetwork, CnnPolicy, MlpPolicy

__all__ = ["BayesianDQN", "BayesianDQNPolicy", "BayesianQNetwork", "CnnPolicy", "MlpPolicy"]

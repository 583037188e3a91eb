import os

from sb3_bayes.bayes_ddpg import BayesianDDPG
from sb3_bayes.bayes_dqn import BayesianDQN
from sb3_bayes.dvrl import DVRL
from sb3_bayes.pets import PETS
from sb3_bayes.psdrl import PSDRL

# Read version from file
version_file = os.path.join(os.path.dirname(__file__), "version.txt")
with open(version_file) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = ["DVRL", "PETS", "PSDRL", "BayesianDDPG", "BayesianDQN", "__version__"]

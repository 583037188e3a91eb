from sb3_bayes.pets.pets import PETS
from sb3_bayes.pets.policies import MlpPolicy, PETSPolicy

__all__ = ["PETS", "MlpPolicy", "PETSPolicy"]

import os

from sb3_bayes.pets import PETS
from sb3_bayes.psdrl import PSDRL

# Read version from file
version_file = os.path.join(os.path.dirname(__file__), "version.txt")
with open(version_file) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = ["PETS", "PSDRL", "__version__"]

"""Models saved by an earlier sb3-bayes still load, hold the same weights, act the same and train on.

The files in ``tests/saved_models/<version>/`` were written by ``tests/saved_models/make_saved_models.py`` at the commit
named in each folder's ``about.json``, with the predictions that version made after loading them.
"""

import glob
import os
import sys

import numpy as np
import pytest
import torch as th

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "saved_models"))
from make_saved_models import MODELS, parameter_sums, stored_predictions  # noqa: E402

SAVED = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "saved_models", "*", "*.zip")))


def test_there_are_saved_models_of_every_algorithm() -> None:
    saved_names = {os.path.splitext(os.path.basename(path))[0] for path in SAVED}
    assert saved_names == set(MODELS)


@pytest.mark.parametrize("path", SAVED, ids=lambda path: os.path.relpath(path, os.path.dirname(__file__)))
def test_saved_model_loads_acts_the_same_and_trains_on(path: str) -> None:
    th.set_num_threads(1)
    name = os.path.splitext(os.path.basename(path))[0]
    algorithm, make_env, _, _ = MODELS[name]
    expected = np.load(path.replace(".zip", ".npz"))

    model = algorithm.load(path)
    sums = parameter_sums(model)
    assert list(sums["parameter_names"]) == list(expected["parameter_names"])
    np.testing.assert_array_equal(sums["parameter_sums"], expected["parameter_sums"])
    # The weights are the saved bytes: equal to the last bit. The predictions were computed on the machine that wrote
    # the files, whose matrix kernels (AVX2, AVX-512, ...) may round differently from this one's, hence a tolerance far
    # below any change of behaviour; exact round trips on one machine are test_save_load.py's.
    predictions = stored_predictions(model, expected["observations"])
    for key, value in predictions.items():
        np.testing.assert_allclose(value, expected[key], rtol=1e-4, atol=1e-5, err_msg=key)

    # Training resumes on a new env, counting on from the saved step count.
    steps_before = model.num_timesteps
    model.set_env(make_env())
    model.learn(20, reset_num_timesteps=False)
    assert model.num_timesteps >= steps_before + 20

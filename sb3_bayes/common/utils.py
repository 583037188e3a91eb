"""Small helpers shared by the algorithms: input validation, finiteness checks, precision control."""

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, NatureCNN
from stable_baselines3.common.vec_env import VecEnv

PLANNING_DTYPES = {"float32": th.float32, "bfloat16": th.bfloat16}


def check_finite(value: th.Tensor, what: str, hint: str = "lower the learning rate or check the data for NaN/inf") -> None:
    """
    Raise a one-line ``ValueError`` when ``value`` holds NaN or inf. rl-zoo3's Optuna objective prunes trials
    that raise ``ValueError``, so a diverged trial is pruned instead of crashing the study.

    :param value: Tensor to check (this synchronises with the device, so keep it out of hot loops).
    :param what: What the tensor is, for the message.
    :param hint: How to fix it.
    """
    if not bool(th.isfinite(value).all()):
        raise ValueError(f"{what} is NaN or inf: {hint}.")


def check_finite_data(value: Any, what: str, algo: str) -> None:
    """
    Raise a one-line ``ValueError`` when data from the environment (an observation, a reward) holds NaN or inf, as it
    enters a buffer: a non-finite input is the environment's fault, not the optimiser's, and must never reach a loss.

    :param value: Array (or tensor) to check.
    :param what: What it is, for the message (``"reward"``, ``"observation"``).
    :param algo: Algorithm name, for the message.
    """
    array = value.detach().cpu().numpy() if isinstance(value, th.Tensor) else np.asarray(value)
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        # Data arrive batched over the environments: name the ones that sent the bad value.
        rows = np.flatnonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1)) if array.ndim else np.zeros(0)
        where = f" (env index {', '.join(map(str, rows))})" if len(rows) else ""
        raise ValueError(
            f"{algo}: the {what} from the environment is NaN or inf{where}: check the environment or its wrappers; "
            "nothing was stored and the model is unchanged."
        )


def check_finite_loss(loss: th.Tensor, what: str) -> None:
    """
    The loss check of :func:`checked_step`: raise a ``ValueError`` before ``backward`` when the loss is NaN or inf.

    :param loss: The (detached) scalar loss.
    :param what: Which loss, for the message (``"the PETS dynamics model loss"``).
    """
    check_finite(
        loss, what[:1].upper() + what[1:], "lower the learning rate (the weights are those of the last finite update)"
    )


def checked_gradient_norm(optimizer: th.optim.Optimizer, grads: Sequence[th.Tensor | None], what: str) -> th.Tensor:
    """
    The global norm of a set of gradients, checked: a NaN or inf clears the optimiser's gradients and raises a
    ``ValueError``, so that no step follows and the weights stay those of the last finite update.

    :param optimizer: The optimiser whose gradients are cleared on failure.
    :param grads: The gradients (None for a parameter the loss does not reach).
    :param what: Which loss, for the message.
    :return: ``||g||_2`` over all the gradients (0 when there are none).
    """
    present = [g for g in grads if g is not None]
    norm = th.linalg.vector_norm(th.stack([th.linalg.vector_norm(g) for g in present])) if present else th.zeros(())
    if not bool(th.isfinite(norm)):
        optimizer.zero_grad()
        raise ValueError(
            f"The gradient of {what} is NaN or inf: lower the learning rate or clip the gradients "
            "(the weights are those of the last finite update)."
        )
    return norm


def checked_step(
    optimizer: th.optim.Optimizer,
    loss: th.Tensor,
    what: str,
    max_grad_norm: float | None = None,
    parameters: Iterable[th.Tensor] | None = None,
) -> th.Tensor:
    """
    One optimiser update that never writes a non-finite value into the weights: ``zero_grad``, a finiteness check of
    the loss, ``backward``, a finiteness check of the gradients' global norm, optional clipping, ``step``.

    A NaN or inf raises a ``ValueError`` (pruned by rl-zoo3's Optuna objective) *before* ``optimizer.step()``, so the
    weights and the optimiser's moments stay those of the last finite update and the model can still be saved.

    :param optimizer: The optimiser of the network(s) the loss trains.
    :param loss: Scalar loss.
    :param what: Which loss, for the message (``"the PETS dynamics model loss"``).
    :param max_grad_norm: Clip the gradients' global norm to this (None: no clipping).
    :param parameters: The parameters whose gradients are checked and clipped (default: the optimiser's).
    :return: The gradients' global norm before clipping.
    """
    optimizer.zero_grad()
    check_finite_loss(loss.detach(), what)
    loss.backward()
    params = list(parameters) if parameters is not None else [p for group in optimizer.param_groups for p in group["params"]]
    grad_norm = checked_gradient_norm(optimizer, [p.grad for p in params], what)
    if max_grad_norm is not None:
        th.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    return grad_norm


def check_flat_box(space: spaces.Space, what: str, algo: str, finite: bool = False) -> spaces.Box:
    """
    Check that a space is a one-dimensional ``Box`` (optionally with finite bounds).

    :param space: The space to check.
    :param what: ``"observation"`` or ``"action"``, for the message.
    :param algo: Algorithm name, for the message.
    :param finite: Whether the bounds must be finite.
    :return: The space, typed as ``Box``.
    """
    if not isinstance(space, spaces.Box) or len(space.shape) != 1:
        raise ValueError(
            f"{algo} supports only flat Box {what} spaces, got {space}: "
            f"use an environment with vector {what}s (e.g. wrap it with gymnasium's FlattenObservation)."
        )
    if finite and not (th.isfinite(th.as_tensor(space.low)).all() and th.isfinite(th.as_tensor(space.high)).all()):
        raise ValueError(f"{algo} needs finite {what} bounds to plan within, got {space}: bound the space.")
    return space


def check_discrete_actions(action_space: spaces.Space, algo: str, alternative: str) -> spaces.Discrete:
    """
    Check that an action space is ``Discrete``.

    :param action_space: The space to check.
    :param algo: Algorithm name, for the message.
    :param alternative: The algorithm of this library to use for continuous actions, for the message.
    :return: The space, typed as ``Discrete``.
    """
    if not isinstance(action_space, spaces.Discrete):
        raise ValueError(
            f"{algo} supports only Discrete action spaces, got {action_space}: use {alternative} for continuous actions."
        )
    return action_space


def get_env_id(env: VecEnv | None) -> str | None:
    """
    The Gymnasium id of the first sub-environment of a ``VecEnv`` (None when it has no registered spec).

    :param env: The vectorised environment.
    :return: The id, e.g. ``"Pendulum-v1"``.
    """
    if env is None:
        return None
    try:
        spec = env.get_attr("spec", indices=0)[0]
    except (AttributeError, IndexError):
        return None
    return None if spec is None else spec.id


def get_env_kwargs(env: VecEnv | None) -> dict:
    """
    The keyword arguments the first sub-environment was made with (empty when unknown).

    :param env: The vectorised environment.
    :return: ``spec.kwargs``.
    """
    if env is None:
        return {}
    try:
        spec = env.get_attr("spec", indices=0)[0]
    except (AttributeError, IndexError):
        return {}
    return {} if spec is None else dict(spec.kwargs)


def bfloat16_matmul_is_fast(device: th.device) -> bool:
    """
    Whether ``device`` multiplies bfloat16 matrices natively: GPUs of compute capability 8.0 or newer, and CPUs with
    AMX tiles or AVX512-BF16. Elsewhere bfloat16 is emulated and slower than float32.

    :param device: The device to ask about.
    :return: True where bfloat16 planning pays off.
    """
    if device.type == "cuda":
        return th.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        return bool(th.cpu._is_amx_tile_supported() or th.cpu._is_avx512_bf16_supported())
    return True


@contextlib.contextmanager
def planning_precision(device: th.device, dtype: th.dtype) -> Iterator[None]:
    """
    Run matrix products in ``dtype`` (bfloat16 autocast) while states and sums stay in float32.

    On CPUs with AMX, and on GPUs, bfloat16 matrix products are several times faster; the planner only needs the
    ranking of candidate action sequences, which bfloat16 preserves (checked by the tests).

    :param device: Device the computation runs on.
    :param dtype: ``th.float32`` (no autocast) or ``th.bfloat16``.
    """
    if dtype == th.float32:
        yield
    else:
        with th.autocast(device_type=device.type, dtype=dtype):
            yield


def check_image_observations(
    observation_space: spaces.Space,
    features_extractor_class: type[BaseFeaturesExtractor],
    features_extractor_kwargs: dict[str, Any] | None,
    policy_name: str,
    hint: str = "use MlpPolicy for vector observations",
) -> None:
    """
    Raise a one-line ``ValueError`` where SB3's ``NatureCNN`` would fail its multi-line assertion: a NatureCNN
    features extractor (``CnnPolicy``) on observations that are not images.

    :param observation_space: The observation space.
    :param features_extractor_class: The policy's features extractor.
    :param features_extractor_kwargs: Its keyword arguments (``normalized_image`` relaxes the uint8 requirement).
    :param policy_name: The policy, for the message.
    :param hint: How to fix it.
    """
    if not issubclass(features_extractor_class, NatureCNN):
        return
    normalized_image = bool((features_extractor_kwargs or {}).get("normalized_image", False))
    # The same test as NatureCNN's assertion.
    if not is_image_space(observation_space, check_channels=False, normalized_image=normalized_image):
        space = " ".join(str(observation_space).split())  # numpy wraps long bounds over lines: keep one line
        raise ValueError(
            f"{policy_name} needs image observations (a uint8 Box in [0, 255] of shape (C, H, W) or (H, W, C)), got the "
            f"observation space {space}: {hint}."
        )

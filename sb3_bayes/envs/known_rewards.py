"""
Known (analytic) reward and termination functions for model-based RL (PETS).

Every function has the signature ``fn(obs, action, next_obs) -> Tensor`` where ``obs`` / ``next_obs`` have shape
``[..., obs_dim]`` and ``action`` has shape ``[..., act_dim]`` (any leading batch shape, broadcast together).
Reward functions return a floating tensor of shape ``[...]``, termination functions a ``bool`` tensor of shape ``[...]``.

The formulas are transcribed from the Gymnasium 1.4 source (``gymnasium/envs/classic_control/pendulum.py`` and
``gymnasium/envs/mujoco/*_v5.py``; line numbers below refer to that release) and reproduce the environment reward on real
transitions, provided the environment is created with :attr:`KnownModelSpec.env_kwargs` ("exact mode").

Dtype policy: the computation runs in the promoted dtype of the three inputs when it is ``float32`` or ``float64``;
any other dtype (``bfloat16``, ``float16``, integers) is upcast to ``float32``. Rewards are returned in that compute dtype
(so ``bfloat16`` inputs give a ``float32`` reward). Note that rewards built on position differences (HalfCheetah, Hopper:
``(x' - x) / dt`` with a small ``dt``) are only as precise as the inputs: ``float32`` positions give errors of order
``1e-5`` and ``bfloat16`` positions are too coarse for a meaningful forward reward.

The functions are pure torch: they never move data to the host nor branch on tensor values, so they run on any device
and inside ``torch.compile`` / CUDA graphs. Only the last dimension of each input is checked (a static shape check).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch as th

__all__ = [
    "KNOWN_MODEL_SPECS",
    "KnownModelSpec",
    "get_known_spec",
    "half_cheetah_reward",
    "hopper_reward",
    "hopper_termination",
    "inverted_pendulum_reward",
    "inverted_pendulum_termination",
    "no_termination",
    "pendulum_reward",
    "pusher_reward",
    "reacher_reward",
]

TransitionFn = Callable[[th.Tensor, th.Tensor, th.Tensor], th.Tensor]


@dataclass(frozen=True)
class KnownModelSpec:
    """
    Known reward / termination functions of an environment, plus model-input hints for PETS.

    :param reward_fn: ``fn(obs, action, next_obs) -> reward [...]``, exact in the exact mode (see ``env_kwargs``).
    :param termination_fn: ``fn(obs, action, next_obs) -> terminated [...]`` (bool); all-False for environments that
        never terminate.
    :param env_kwargs: keyword arguments for ``gymnasium.make`` required for ``reward_fn`` / ``termination_fn`` to be
        exact (empty when the default environment is already exact). The observation indices below refer to the
        observation layout of the environment created with these kwargs.
    :param drop_input_dims: observation dimensions not fed to the dynamics model (e.g. the x position, for translation
        invariance). They are still predicted (as deltas unless listed in ``absolute_target_dims``).
    :param angle_dims: observation dimensions that hold unbounded angles, replaced by ``(sin, cos)`` in the model input.
    :param absolute_target_dims: observation dimensions predicted absolutely instead of as deltas ``next_obs - obs``.
    """

    reward_fn: TransitionFn
    termination_fn: TransitionFn
    # excluded from the hash (a dict is unhashable) so that a spec stays hashable
    env_kwargs: dict[str, Any] = field(hash=False)
    drop_input_dims: tuple[int, ...] = ()
    angle_dims: tuple[int, ...] = ()
    absolute_target_dims: tuple[int, ...] = ()


# ----------------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------------


def _compute_dtype(*tensors: th.Tensor) -> th.dtype:
    """
    Dtype in which a reward is computed: the promoted input dtype if it is float32/float64, float32 otherwise.

    :param tensors: the input tensors.
    :return: the compute dtype.
    """
    dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        dtype = th.promote_types(dtype, tensor.dtype)
    return dtype if dtype in (th.float32, th.float64) else th.float32


def _check_inputs(
    env_id: str, obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor, obs_dim: int, act_dim: int, hint: str = ""
) -> th.dtype:
    """
    Check the last dimension of the inputs (static shapes only, no device sync) and give the dtype to compute in.

    :param env_id: environment id, for the error message.
    :param obs: observation ``[..., obs_dim]``.
    :param action: action ``[..., act_dim]``.
    :param next_obs: next observation ``[..., obs_dim]``.
    :param obs_dim: expected observation size.
    :param act_dim: expected action size.
    :param hint: extra text appended to the error message.
    :return: the compute dtype of the three inputs (``_compute_dtype``).
    :raises ValueError: if a last dimension does not match.
    """
    if obs.shape[-1:] != (obs_dim,) or next_obs.shape[-1:] != (obs_dim,) or action.shape[-1:] != (act_dim,):
        raise ValueError(
            f"{env_id}: expected obs/next_obs [..., {obs_dim}] and action [..., {act_dim}], got obs {tuple(obs.shape)}, "
            f"action {tuple(action.shape)}, next_obs {tuple(next_obs.shape)}{hint}"
        )
    return _compute_dtype(obs, action, next_obs)


def _square_sum(action: th.Tensor, dtype: th.dtype) -> th.Tensor:
    """
    ``np.square(action).sum()`` over the last dimension.

    :param action: action ``[..., act_dim]``.
    :param dtype: compute dtype.
    :return: ``sum(action ** 2, -1)`` of shape ``[...]``.
    """
    return action.to(dtype).square().sum(dim=-1)


def _batch_shape(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Size:
    """
    Broadcast leading (batch) shape of the three inputs.

    :param obs: observation ``[..., obs_dim]``.
    :param action: action ``[..., act_dim]``.
    :param next_obs: next observation ``[..., obs_dim]``.
    :return: the broadcast batch shape.
    """
    return th.broadcast_shapes(obs.shape[:-1], action.shape[:-1], next_obs.shape[:-1])


def no_termination(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
    """
    Termination function of environments that never terminate (``terminated`` is always ``False``).

    :param obs: observation ``[..., obs_dim]``.
    :param action: action ``[..., act_dim]``.
    :param next_obs: next observation ``[..., obs_dim]``.
    :return: all-False bool tensor of shape ``[...]`` on the device of ``next_obs``.
    """
    return th.zeros(_batch_shape(obs, action, next_obs), dtype=th.bool, device=next_obs.device)


# ----------------------------------------------------------------------------------------------------------------------
# Pendulum-v1 (classic_control/pendulum.py)
# obs = [cos(theta), sin(theta), theta_dot], action = [torque] in [-2, 2]
# ----------------------------------------------------------------------------------------------------------------------

_PENDULUM_MAX_TORQUE = 2.0  # pendulum.py:104 self.max_torque = 2.0


def pendulum_reward(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
    """
    Pendulum-v1 reward, computed from the *pre-step* state (``obs``) and the clipped torque.

    pendulum.py:134-147::

        u = np.clip(u, -self.max_torque, self.max_torque)[0]
        costs = angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * (u**2)
        return ..., -costs, ...

    ``angle_normalize`` (pendulum.py:281) maps to ``[-pi, pi)``; ``atan2(sin, cos)`` gives the same value in
    ``[-pi, pi]`` (the ``+-pi`` branch difference disappears once squared).

    :param obs: observation ``[..., 3]`` (pre-step state).
    :param action: action ``[..., 1]`` (torque, clipped to ``[-2, 2]`` as in the environment).
    :param next_obs: next observation ``[..., 3]`` (unused).
    :return: reward ``[...]``.
    """
    dtype = _check_inputs("Pendulum-v1", obs, action, next_obs, 3, 1)
    obs = obs.to(dtype)
    theta = th.atan2(obs[..., 1], obs[..., 0])
    theta_dot = obs[..., 2]
    torque = action[..., 0].to(dtype).clamp(-_PENDULUM_MAX_TORQUE, _PENDULUM_MAX_TORQUE)
    return -(theta.square() + 0.1 * theta_dot.square() + 0.001 * torque.square())


# ----------------------------------------------------------------------------------------------------------------------
# InvertedPendulum-v5 (mujoco/inverted_pendulum_v5.py)
# obs = [slider x, hinge angle, slider velocity, hinge angular velocity] (qpos, qvel)
# ----------------------------------------------------------------------------------------------------------------------


def inverted_pendulum_termination(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
    """
    InvertedPendulum-v5 termination, on the *post-step* observation.

    inverted_pendulum_v5.py:162-164::

        terminated = bool(not np.isfinite(observation).all() or (np.abs(observation[1]) > 0.2))

    :param obs: observation ``[..., 4]`` (unused).
    :param action: action ``[..., 1]`` (unused).
    :param next_obs: next observation ``[..., 4]``.
    :return: bool tensor ``[...]``.
    """
    _check_inputs("InvertedPendulum-v5", obs, action, next_obs, 4, 1)
    next_obs = next_obs.to(_compute_dtype(next_obs))
    terminated = ~th.isfinite(next_obs).all(dim=-1) | (next_obs[..., 1].abs() > 0.2)
    return terminated.expand(_batch_shape(obs, action, next_obs))


def inverted_pendulum_reward(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
    """
    InvertedPendulum-v5 reward: 1 while alive, 0 on the terminating transition.

    inverted_pendulum_v5.py:166 ``reward = int(not terminated)``. A planner must additionally zero the rewards of the
    steps *after* a particle terminated.

    :param obs: observation ``[..., 4]`` (unused).
    :param action: action ``[..., 1]`` (unused).
    :param next_obs: next observation ``[..., 4]``.
    :return: reward ``[...]``.
    """
    terminated = inverted_pendulum_termination(obs, action, next_obs)
    return (~terminated).to(_compute_dtype(obs, action, next_obs))


# ----------------------------------------------------------------------------------------------------------------------
# Reacher-v5 (mujoco/reacher_v5.py)
# obs = [cos q0, cos q1, sin q0, sin q1, target_x, target_y, qvel0, qvel1, (fingertip - target)_x, (fingertip - target)_y]
# ----------------------------------------------------------------------------------------------------------------------

_REACHER_DIST_WEIGHT = 1.0  # reacher_v5.py default reward_dist_weight=1
_REACHER_CTRL_WEIGHT = 1.0  # reacher_v5.py default reward_control_weight=1


def reacher_reward(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
    """
    Reacher-v5 reward, on the *post-step* observation and the raw (unclipped) action.

    reacher_v5.py:203-205::

        vec = self.get_body_com("fingertip") - self.get_body_com("target")
        reward_dist = -np.linalg.norm(vec) * self._reward_dist_weight
        reward_ctrl = -np.square(action).sum() * self._reward_control_weight

    The observation holds ``vec[:2]`` (reacher_v5.py:241); ``vec[2]`` is always 0 (fingertip and target at the same
    height), so ``||vec|| = ||next_obs[8:10]||``.

    :param obs: observation ``[..., 10]`` (unused).
    :param action: action ``[..., 2]``.
    :param next_obs: next observation ``[..., 10]``.
    :return: reward ``[...]``.
    """
    dtype = _check_inputs("Reacher-v5", obs, action, next_obs, 10, 2)
    dist = th.linalg.vector_norm(next_obs[..., 8:10].to(dtype), dim=-1)
    return -_REACHER_DIST_WEIGHT * dist - _REACHER_CTRL_WEIGHT * _square_sum(action, dtype)


# ----------------------------------------------------------------------------------------------------------------------
# Pusher-v5 (mujoco/pusher_v5.py)
# obs = [qpos[:7], qvel[:7], com(tips_arm) (14:17), com(object) (17:20), com(goal) (20:23)]
# ----------------------------------------------------------------------------------------------------------------------

_PUSHER_NEAR_WEIGHT = 0.5  # pusher_v5.py:173 reward_near_weight=0.5
_PUSHER_DIST_WEIGHT = 1.0  # pusher_v5.py:174 reward_dist_weight=1
_PUSHER_CTRL_WEIGHT = 0.1  # pusher_v5.py:175 reward_control_weight=0.1


def pusher_reward(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
    """
    Pusher-v5 reward, on the *post-step* observation and the raw (unclipped) action.

    pusher_v5.py:226-233::

        vec_1 = self.get_body_com("object") - self.get_body_com("tips_arm")
        vec_2 = self.get_body_com("object") - self.get_body_com("goal")
        reward_near = -np.linalg.norm(vec_1) * self._reward_near_weight
        reward_dist = -np.linalg.norm(vec_2) * self._reward_dist_weight
        reward_ctrl = -np.square(action).sum() * self._reward_control_weight
        reward = reward_dist + reward_ctrl + reward_near

    The three body positions are observation entries 14:17, 17:20, 20:23 (pusher_v5.py:266-275).

    :param obs: observation ``[..., 23]`` (unused).
    :param action: action ``[..., 7]``.
    :param next_obs: next observation ``[..., 23]``.
    :return: reward ``[...]``.
    """
    dtype = _check_inputs("Pusher-v5", obs, action, next_obs, 23, 7)
    next_obs = next_obs.to(dtype)
    tips_arm, obj, goal = next_obs[..., 14:17], next_obs[..., 17:20], next_obs[..., 20:23]
    reward_near = -_PUSHER_NEAR_WEIGHT * th.linalg.vector_norm(obj - tips_arm, dim=-1)
    reward_dist = -_PUSHER_DIST_WEIGHT * th.linalg.vector_norm(obj - goal, dim=-1)
    reward_ctrl = -_PUSHER_CTRL_WEIGHT * _square_sum(action, dtype)
    return reward_dist + reward_ctrl + reward_near


# ----------------------------------------------------------------------------------------------------------------------
# HalfCheetah-v5 (mujoco/half_cheetah_v5.py), exact mode exclude_current_positions_from_observation=False
# obs = [rootx, rootz, rooty, bthigh, bshin, bfoot, fthigh, fshin, ffoot, qvel (9)] (18 dims)
# ----------------------------------------------------------------------------------------------------------------------

_HALF_CHEETAH_DT = 0.01 * 5  # dt = model.opt.timestep * frame_skip: half_cheetah.xml timestep=0.01, frame_skip=5
_HALF_CHEETAH_FORWARD_WEIGHT = 1.0  # half_cheetah_v5.py:158 forward_reward_weight=1.0
_HALF_CHEETAH_CTRL_WEIGHT = 0.1  # half_cheetah_v5.py:159 ctrl_cost_weight=0.1
_EXACT_POSITIONS_HINT = "; create the env with exclude_current_positions_from_observation=False (spec.env_kwargs)"


def half_cheetah_reward(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
    """
    HalfCheetah-v5 reward; needs the x position in the observation (``exclude_current_positions_from_observation=False``).

    half_cheetah_v5.py:225-243 (with control_cost at :220-222)::

        x_velocity = (x_position_after - x_position_before) / self.dt
        forward_reward = self._forward_reward_weight * x_velocity
        ctrl_cost = self._ctrl_cost_weight * np.sum(np.square(action))
        reward = forward_reward - ctrl_cost

    :param obs: observation ``[..., 18]`` (``obs[..., 0]`` is x before the step).
    :param action: action ``[..., 6]`` (raw, unclipped).
    :param next_obs: next observation ``[..., 18]`` (``next_obs[..., 0]`` is x after the step).
    :return: reward ``[...]``.
    """
    dtype = _check_inputs("HalfCheetah-v5", obs, action, next_obs, 18, 6, _EXACT_POSITIONS_HINT)
    x_velocity = (next_obs[..., 0].to(dtype) - obs[..., 0].to(dtype)) / _HALF_CHEETAH_DT
    return _HALF_CHEETAH_FORWARD_WEIGHT * x_velocity - _HALF_CHEETAH_CTRL_WEIGHT * _square_sum(action, dtype)


# ----------------------------------------------------------------------------------------------------------------------
# Hopper-v5 (mujoco/hopper_v5.py), exact mode exclude_current_positions_from_observation=False
# obs = [rootx, rootz, rooty, thigh, leg, foot, clip(qvel, -10, 10) (6)] (12 dims)
# ----------------------------------------------------------------------------------------------------------------------

_HOPPER_DT = 0.002 * 4  # dt = model.opt.timestep * frame_skip: hopper.xml timestep=0.002, frame_skip=4
_HOPPER_FORWARD_WEIGHT = 1.0  # hopper_v5.py:168 forward_reward_weight=1.0
_HOPPER_CTRL_WEIGHT = 1e-3  # hopper_v5.py:169 ctrl_cost_weight=1e-3
_HOPPER_HEALTHY_REWARD = 1.0  # hopper_v5.py:170 healthy_reward=1.0
_HOPPER_STATE_RANGE = (-100.0, 100.0)  # hopper_v5.py:172 healthy_state_range
_HOPPER_Z_RANGE = (0.7, math.inf)  # hopper_v5.py:173 healthy_z_range
_HOPPER_ANGLE_RANGE = (-0.2, 0.2)  # hopper_v5.py:174 healthy_angle_range


def _hopper_is_healthy(next_obs: th.Tensor) -> th.Tensor:
    """
    ``Hopper.is_healthy`` on the post-step observation (exact-mode layout).

    hopper_v5.py:256-271::

        z, angle = self.data.qpos[1:3]
        state = self.state_vector()[2:]          # qpos[2:] and (unclipped) qvel
        healthy_state = np.all(np.logical_and(min_state < state, state < max_state))
        healthy_z = min_z < z < max_z
        healthy_angle = min_angle < angle < max_angle

    ``state`` is ``next_obs[..., 2:]``, except that the observation clips qvel to ``[-10, 10]`` (hopper_v5.py:275), so an
    unclipped velocity beyond +-100 (which the observation cannot show) is the one unhealthy case not detected here.
    NaN entries compare False and are thus unhealthy, as in numpy.

    :param next_obs: next observation ``[..., 12]`` in the compute dtype.
    :return: bool tensor ``[...]``.
    """
    z, angle, state = next_obs[..., 1], next_obs[..., 2], next_obs[..., 2:]
    healthy_state = ((_HOPPER_STATE_RANGE[0] < state) & (state < _HOPPER_STATE_RANGE[1])).all(dim=-1)
    healthy_z = (_HOPPER_Z_RANGE[0] < z) & (z < _HOPPER_Z_RANGE[1])
    healthy_angle = (_HOPPER_ANGLE_RANGE[0] < angle) & (angle < _HOPPER_ANGLE_RANGE[1])
    return healthy_state & healthy_z & healthy_angle


def hopper_termination(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
    """
    Hopper-v5 termination: ``not is_healthy`` on the *post-step* state (hopper_v5.py:291, terminate_when_unhealthy=True).

    :param obs: observation ``[..., 12]`` (unused).
    :param action: action ``[..., 3]`` (unused).
    :param next_obs: next observation ``[..., 12]``.
    :return: bool tensor ``[...]``.
    """
    _check_inputs("Hopper-v5", obs, action, next_obs, 12, 3, _EXACT_POSITIONS_HINT)
    healthy = _hopper_is_healthy(next_obs.to(_compute_dtype(next_obs)))
    return (~healthy).expand(_batch_shape(obs, action, next_obs))


def hopper_reward(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
    """
    Hopper-v5 reward; needs the x position in the observation (``exclude_current_positions_from_observation=False``).

    hopper_v5.py:284-312 (healthy_reward at :248-250, control_cost at :252-254)::

        x_velocity = (x_position_after - x_position_before) / self.dt
        forward_reward = self._forward_reward_weight * x_velocity
        healthy_reward = self.is_healthy * self._healthy_reward      # post-step state
        reward = forward_reward + healthy_reward - self._ctrl_cost_weight * np.sum(np.square(action))

    The healthy bonus is therefore 0 on the terminating transition.

    :param obs: observation ``[..., 12]`` (``obs[..., 0]`` is x before the step).
    :param action: action ``[..., 3]`` (raw, unclipped).
    :param next_obs: next observation ``[..., 12]``.
    :return: reward ``[...]``.
    """
    dtype = _check_inputs("Hopper-v5", obs, action, next_obs, 12, 3, _EXACT_POSITIONS_HINT)
    next_obs = next_obs.to(dtype)
    x_velocity = (next_obs[..., 0] - obs[..., 0].to(dtype)) / _HOPPER_DT
    healthy_reward = _hopper_is_healthy(next_obs).to(dtype) * _HOPPER_HEALTHY_REWARD
    return _HOPPER_FORWARD_WEIGHT * x_velocity + healthy_reward - _HOPPER_CTRL_WEIGHT * _square_sum(action, dtype)


# ----------------------------------------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------------------------------------

_EXACT_POSITIONS_KWARGS: dict[str, Any] = {"exclude_current_positions_from_observation": False}

KNOWN_MODEL_SPECS: dict[str, KnownModelSpec] = {
    # obs already encodes the angle as (cos, sin): no angle dims.
    "Pendulum-v1": KnownModelSpec(reward_fn=pendulum_reward, termination_fn=no_termination, env_kwargs={}),
    # the slider position is bounded by the rail (not translation invariant) and the hinge angle stays within
    # +-0.2 rad while alive: no input transformation.
    "InvertedPendulum-v5": KnownModelSpec(
        reward_fn=inverted_pendulum_reward, termination_fn=inverted_pendulum_termination, env_kwargs={}
    ),
    # joint angles are already given as (cos, sin); the target (obs[4:6]) is constant within an episode.
    "Reacher-v5": KnownModelSpec(reward_fn=reacher_reward, termination_fn=no_termination, env_kwargs={}),
    # all seven arm joints are range-limited hinges: no angle dims.
    "Pusher-v5": KnownModelSpec(reward_fn=pusher_reward, termination_fn=no_termination, env_kwargs={}),
    # as in PETS (Chua et al. 2018, obs_preproc): drop x (translation invariance; its delta is still predicted, which is
    # what the reward needs) and feed the unlimited root pitch (rooty, obs[2]) as sin/cos.
    "HalfCheetah-v5": KnownModelSpec(
        reward_fn=half_cheetah_reward,
        termination_fn=no_termination,
        env_kwargs=dict(_EXACT_POSITIONS_KWARGS),
        drop_input_dims=(0,),
        angle_dims=(2,),
    ),
    # drop x (translation invariance); the root pitch stays within +-0.2 rad before termination: no angle dims.
    "Hopper-v5": KnownModelSpec(
        reward_fn=hopper_reward,
        termination_fn=hopper_termination,
        env_kwargs=dict(_EXACT_POSITIONS_KWARGS),
        drop_input_dims=(0,),
    ),
}


def get_known_spec(env_id: str) -> KnownModelSpec:
    """
    Known reward / termination spec of an environment.

    :param env_id: Gymnasium environment id, e.g. ``"HalfCheetah-v5"``.
    :return: the spec.
    :raises ValueError: if no spec is known for ``env_id``.
    """
    try:
        return KNOWN_MODEL_SPECS[env_id]
    except KeyError:
        raise ValueError(
            f"No known reward/termination spec for env id {env_id!r}; known ids: {', '.join(sorted(KNOWN_MODEL_SPECS))}"
        ) from None

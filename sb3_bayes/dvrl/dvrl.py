"""DVRL: Deep Variational Reinforcement Learning for POMDPs (Igl, Zintgraf, Le, Wood and Whiteson, ICML 2018)."""

import io
import pathlib
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv
from typing_extensions import Unpack

from sb3_bayes.common.base_class import AlgorithmSettings, NamedRunsMixin, make_checked_env
from sb3_bayes.common.random_state import ExactResumeMixin
from sb3_bayes.common.utils import check_finite_data, check_finite_loss, checked_gradient_norm, checked_step
from sb3_bayes.common.validation import ParameterValidator
from sb3_bayes.dvrl.buffers import DVRLRolloutBuffer
from sb3_bayes.dvrl.policies import Belief, CnnPolicy, DVRLPolicy, FilterNoise, MlpPolicy, check_spaces

OPTIMIZERS = ("rmsprop", "adam")
#: Adam's epsilon (the original's; RMSprop's is the ``rms_prop_eps`` argument).
ADAM_EPS = 1e-5
#: Attribute that carries the training state (belief, pending filter noise, backpropagation window) through a save.
TRAINING_STATE_KEY = "_training_state"


class DVRL(ExactResumeMixin, NamedRunsMixin, OnPolicyAlgorithm):
    """
    Deep Variational Reinforcement Learning (DVRL) for partially observable environments.

    The agent's belief is a particle filter over a variational RNN (VRNN): per environment ``n_particles`` weighted
    particles, each a GRU state ``h`` and a latent ``z``. Every step the particles are resampled (systematic
    resampling), a new latent is sampled from a learned proposal that sees the observation, and the particle is
    weighted by prior x emission / proposal. The policy reads the whole particle set through a GRU; a synchronous
    n-step advantage actor-critic (A2C) is trained jointly with the model, whose loss is the negative ELBO of
    auto-encoding SMC (the log of the filter's evidence estimate, one term ``log mean_k w_k`` per step):

    ``loss = policy_coef * L_policy + vf_coef * L_value - ent_coef * H + pre_activation_coef * |u|^2
    + elbo_coef * (-ELBO)``

    with every term averaged over the steps and environments of the newest rollout (plain n-step returns
    bootstrapped with the value of the last belief, advantages detached in the policy term), a global grad-norm
    clip and RMSprop (or Adam). With ``model_max_grad_norm`` set, the gradient of the model term (the ELBO) and that of
    the A2C terms are clipped each to its own bound before they are added (see :func:`checked_split_step`): with one
    global clip the ELBO's gradient, hundreds of times the policy's at the start of training, sets the clip factor of
    the whole update.

    Gradients flow through the belief over up to ``multiplier_backprop_length`` (``M``) rollouts, as in the original,
    where the belief is detached every ``M`` updates: the rollouts of the current window (observations, actions,
    episode starts, and the random numbers of every filter step) and the detached belief at its start are kept, the
    filter is replayed over the window with the current weights at update time, and the loss of the newest rollout
    is back-propagated through it (the original kept autograd graphs across optimiser steps instead, which modern
    PyTorch rejects). With unchanged weights the replay reproduces the belief of the rollout exactly (bit for bit;
    with BatchNorm, i.e. ``CnnPolicy``, the replay normalises with batch statistics in training mode while acting
    uses the running ones, as SB3 does). Every step's loss terms (the ELBO included) enter one update, as in the
    original. ``sliding_window=True`` replays the last ``M`` rollouts at every update instead.

    ``use_particle_filter=False`` gives the paper's RNN baseline (a GRU over the encoded observations and actions,
    no ELBO). The belief is a recurrent state, as sb3-contrib's RecurrentPPO handles LSTM states:
    ``predict(obs, state, episode_start)`` takes and returns it as the tuple of numpy arrays ``(h [B, K, h_dim],
    z [B, K, z_dim], log_weights [B, K], prev_action [B, action_dim])`` (``prev_action`` one-hot for Discrete
    actions; ``K = 1`` and ``z_dim = 0`` for the RNN baseline); an episode start resets it to zeros. The belief is
    stochastic (latent samples, resampling): seed torch for reproducible ``predict`` calls.

    Observation spaces: Box (vectors with ``MlpPolicy``, images with ``CnnPolicy``; uint8 frames stay uint8 in the
    buffer), Discrete, MultiDiscrete, MultiBinary (one-hot/flat); action spaces: Discrete and Box (Gaussian actions
    are clipped to the bounds for the env). ``batch_norm=True`` (the ``CnnPolicy`` default) needs ``n_envs >= 2`` to
    learn, since the action encoder normalises over the environments.

    Every argument and every ``policy_kwargs`` entry is checked when the model is built (and again when it is loaded,
    where rl-zoo3 passes hyperparameters as ``load`` keyword arguments): a bad value raises a
    :class:`~sb3_bayes.common.validation.HyperparameterError` that names it. Each hyperparameter has one home:
    ``n_particles`` and ``use_particle_filter`` are DVRL arguments, passed to the policy by name, as are the settings
    DVRL derives for it (``resample`` from ``elbo_coef``, ``optimizer_class`` and ``optimizer_kwargs`` from
    ``optimizer``, ``rms_prop_alpha`` and ``rms_prop_eps``); the same key in ``policy_kwargs`` with another value
    raises.

    Training is NaN-safe and resumes exactly: observations and rewards are checked as they arrive from the
    environment, a non-finite loss or gradient raises a ``ValueError`` (naming the ELBO or the A2C terms) before the
    optimiser step, so the weights stay those of the last finite update; a save holds the random generators' states,
    the belief of the training environments, the filter noise drawn ahead and the backpropagation window, so that
    ``load(path, env=<the same env>, force_reset=False)`` and ``learn(n, reset_num_timesteps=False)`` continue the run
    bit for bit.

    Paper: https://arxiv.org/abs/1806.02426

    :param policy: ``"MlpPolicy"`` (vector observations, Gaussian emission), ``"CnnPolicy"`` (images: the paper's
        Atari conv encoder with BatchNorm and a Bernoulli-style transposed-conv emission) or a ``DVRLPolicy``
        subclass. Network sizes go in ``policy_kwargs``: ``h_dim`` (256), ``z_dim`` (256), ``encoder_sizes``
        ((64, 64): the MLP encoder, mirrored by the vector decoder), ``cnn_channels`` ((32, 64, 32)),
        ``action_encoding`` (128), ``emission`` (``"gaussian"`` | ``"bernoulli"``), ``batch_norm`` (False for
        MlpPolicy, True for CnnPolicy), ``normalize_images`` (True).
    :param env: The environment to learn from (if registered in Gym, can be str).
    :param learning_rate: Learning rate (>= 0, a schedule is accepted); the paper's runs used 2e-4 (DVRL), 1e-4 (RNN).
    :param n_steps: Steps per environment per update (the rollout length of the n-step returns).
    :param gamma: Discount factor, in (0, 1].
    :param ent_coef: Entropy coefficient (>= 0).
    :param vf_coef: Value-loss coefficient (>= 0).
    :param policy_coef: Policy-loss coefficient (>= 0).
    :param pre_activation_coef: Weight (>= 0) of an L2 penalty ``mean_t ||u_t||^2`` on the action head's raw output
        ``u``: the Gaussian's mean, its pre-``tanh`` value with the policy's ``bounded_action_mean``, or the logits. Not
        in the original (0, the default, leaves the loss as it was). It keeps a bounded mean out of ``tanh``'s flat
        tails, where the policy gradient vanishes and a mean on the box's edge cannot come back, as the SAC reference
        code's ``reg`` (on its pre-``tanh`` mean) and rlkit's ``policy_pre_activation_weight`` do; part of the A2C
        terms' gradient (and clip).
    :param elbo_coef: Weight of the negative ELBO (the original's ``encoding_loss_coef``). With 0 the model is not
        trained by its ELBO and resampling is switched off (as in the original; the weights stay those of the last
        step).
    :param max_grad_norm: Gradient-norm clip (> 0): of the whole loss (the original's global clip), or, with
        ``model_max_grad_norm`` set, of the A2C terms' gradient alone.
    :param model_max_grad_norm: None (the original): one global clip ``max_grad_norm`` of the summed gradient. A
        number (> 0): the gradient of the model term ``-elbo_coef * ELBO`` is clipped to this norm and the gradient of
        the A2C terms (policy, value, entropy) to ``max_grad_norm``, separately, before they are added; both reach the
        shared encoders and the VRNN, so the split is by loss, not by parameter. It costs a second backward pass
        through the replayed window. Without an ELBO term (``use_particle_filter=False``) only the A2C bound acts, as
        with the global clip.
    :param multiplier_backprop_length: Number ``M`` of rollouts the gradient flows back through at most (up to
        ``n_steps * M`` steps of the belief chain).
    :param sliding_window: False (the original's schedule): the belief is detached every ``M`` updates, so the
        gradient of an update reaches back over the 1, 2, ..., ``M`` rollouts since then (the replay costs
        ``(M + 1) / 2`` rollouts per update on average). True: always over the last ``M`` rollouts (``M`` per update).
    :param optimizer: ``"rmsprop"`` (alpha ``rms_prop_alpha``, eps ``rms_prop_eps``) or ``"adam"`` (eps 1e-5).
    :param rms_prop_alpha: RMSprop smoothing constant, in [0, 1).
    :param rms_prop_eps: RMSprop epsilon (> 0).
    :param n_particles: Particles per environment ``K`` (paper runs: 15); not used by the RNN baseline. Its one home:
        passed to the policy by name, so ``policy_kwargs`` must not give another value.
    :param use_particle_filter: False gives the RNN baseline (one GRU state, no latent, no ELBO).
    :param normalize_advantage: Whether to normalise the advantages (needs more than one step per rollout,
        ``n_steps * n_envs >= 2``).
    :param _init_setup_model: Whether or not to build the network at the creation of the instance.
    :param settings: The arguments every algorithm passes on to SB3's ``BaseAlgorithm`` unchanged, by name and with SB3's
        defaults (:class:`~sb3_bayes.common.base_class.AlgorithmSettings`): ``stats_window_size``, ``tensorboard_log``,
        ``policy_kwargs``, ``verbose``, ``seed``, ``device``. Here ``policy_kwargs`` holds the policy's arguments: network
        sizes, see ``policy``; the filter's random numbers come from torch's generator, seeded by ``seed``.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy, "CnnPolicy": CnnPolicy}
    default_log_interval = 100  # rollouts of n_steps steps between two log dumps
    policy: DVRLPolicy  # type: ignore[assignment]
    rollout_buffer: DVRLRolloutBuffer  # type: ignore[assignment]

    def __init__(
        self,
        policy: str | type[DVRLPolicy],
        env: GymEnv | str | None,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 5,
        gamma: float = 0.99,
        ent_coef: float = 0.01,
        vf_coef: float = 0.5,
        policy_coef: float = 1.0,
        pre_activation_coef: float = 0.0,
        elbo_coef: float = 0.1,
        max_grad_norm: float = 0.5,
        model_max_grad_norm: float | None = None,
        multiplier_backprop_length: int = 5,
        sliding_window: bool = False,
        optimizer: str = "rmsprop",
        rms_prop_alpha: float = 0.99,
        rms_prop_eps: float = 1e-5,
        n_particles: int = 10,
        use_particle_filter: bool = True,
        normalize_advantage: bool = False,
        _init_setup_model: bool = True,
        **settings: Unpack[AlgorithmSettings],
    ) -> None:
        env = make_checked_env(type(self).__name__, env, settings, check_spaces)
        super().__init__(
            policy,  # type: ignore[arg-type]
            env,  # type: ignore[arg-type]
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=1.0,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=False,
            sde_sample_freq=-1,
            _init_setup_model=False,
            **settings,
            supported_action_spaces=None,  # checked with a ValueError that names the space
        )
        # The hyperparameters are checked by _check_hyperparameters(), at the start of _setup_model().
        self.policy_coef = policy_coef
        self.pre_activation_coef = pre_activation_coef
        self.elbo_coef = elbo_coef
        self.model_max_grad_norm = model_max_grad_norm
        self.multiplier_backprop_length = multiplier_backprop_length
        self.sliding_window = sliding_window
        self.optimizer = optimizer
        self.rms_prop_alpha = rms_prop_alpha
        self.rms_prop_eps = rms_prop_eps
        self.n_particles = n_particles
        self.use_particle_filter = use_particle_filter
        self.normalize_advantage = normalize_advantage
        # Belief before the filter step that consumes `_last_obs`, and that step's random numbers once drawn (the
        # bootstrap value at the end of a rollout draws them; the next rollout's first step reuses them). Both travel
        # with a save (see save()).
        self._belief: Belief | None = None
        self._pending_noise: FilterNoise | None = None
        if _init_setup_model:
            self._setup_model()

    def _check_hyperparameters(self) -> None:
        """
        Check every argument (types, ranges, choices, relations) and normalise NumPy scalars from YAML files or
        samplers to Python numbers. Called at the start of :meth:`_setup_model`, so at construction and at ``load``
        (whose keyword arguments replace the saved values). The policy checks its own arguments when it is built; the
        spaces are checked by :func:`~sb3_bayes.dvrl.policies.check_spaces`, ``device`` by SB3.
        """
        check = ParameterValidator("DVRL")
        check.of_type(
            "policy",
            self.policy_class,
            isinstance(self.policy_class, type) and issubclass(self.policy_class, DVRLPolicy),
            "'MlpPolicy', 'CnnPolicy' or a DVRLPolicy subclass",
        )
        self.learning_rate = check.learning_rate("learning_rate", self.learning_rate)
        self.n_steps = check.integer("n_steps", self.n_steps)
        self.gamma = check.fraction("gamma", self.gamma)
        self.ent_coef = check.non_negative("ent_coef", self.ent_coef)
        self.vf_coef = check.non_negative("vf_coef", self.vf_coef)
        self.policy_coef = check.non_negative("policy_coef", self.policy_coef)
        self.pre_activation_coef = check.non_negative("pre_activation_coef", self.pre_activation_coef)
        self.elbo_coef = check.non_negative("elbo_coef", self.elbo_coef)
        # A negative clip norm would flip the sign of every gradient (clip_grad_norm_ scales by max_norm / norm).
        self.max_grad_norm = check.positive("max_grad_norm", self.max_grad_norm)
        self.model_max_grad_norm = check.optional(check.positive, "model_max_grad_norm", self.model_max_grad_norm)
        self.multiplier_backprop_length = check.integer("multiplier_backprop_length", self.multiplier_backprop_length)
        self.sliding_window = check.boolean("sliding_window", self.sliding_window)
        self.optimizer = check.choice("optimizer", self.optimizer, OPTIMIZERS)
        # alpha = 1 would never update RMSprop's running average of squared gradients (the step would be grad / eps).
        self.rms_prop_alpha = check.fraction("rms_prop_alpha", self.rms_prop_alpha, zero=True, one=False)
        self.rms_prop_eps = check.positive("rms_prop_eps", self.rms_prop_eps)
        self.n_particles = check.integer("n_particles", self.n_particles)
        self.use_particle_filter = check.boolean("use_particle_filter", self.use_particle_filter)
        self.normalize_advantage = check.boolean("normalize_advantage", self.normalize_advantage)
        n_envs = getattr(self, "n_envs", None)  # known once there is an environment
        check.relation(
            "normalize_advantage",
            self.normalize_advantage,
            not self.normalize_advantage or n_envs is None or self.n_steps * n_envs >= 2,
            "False with one step per rollout (n_steps * n_envs = 1): the standard deviation of one advantage is NaN",
        )
        check.base_algorithm_arguments(self)
        for name, (value, source) in self._policy_arguments().items():
            if name in self.policy_kwargs:
                given = self.policy_kwargs[name]
                allowed = (
                    f"given once, as the DVRL argument {name} ({value!r}), not again in policy_kwargs with another value"
                    if name == source
                    else f"left out of policy_kwargs: DVRL sets it from {source} (here {value!r})"
                )
                check.relation(name, given, bool(given == value), allowed)

    def _policy_arguments(self) -> dict[str, tuple[Any, str]]:
        """
        The policy arguments that DVRL sets itself and passes by name: their one home is a DVRL argument.

        :return: ``{policy argument: (value, the DVRL argument(s) it comes from)}``.
        """
        if self.optimizer == "rmsprop":
            optimizer_class: type[th.optim.Optimizer] = th.optim.RMSprop
            optimizer_kwargs: dict[str, Any] = dict(alpha=self.rms_prop_alpha, eps=self.rms_prop_eps)
        else:
            optimizer_class, optimizer_kwargs = th.optim.Adam, dict(eps=ADAM_EPS)
        return dict(
            n_particles=(self.n_particles, "n_particles"),
            use_particle_filter=(self.use_particle_filter, "use_particle_filter"),
            # Resampling every step; switched off when the ELBO is not trained (the original's behaviour).
            resample=(self.elbo_coef > 0, "elbo_coef"),
            optimizer_class=(optimizer_class, "optimizer"),
            optimizer_kwargs=(optimizer_kwargs, "optimizer, rms_prop_alpha and rms_prop_eps"),
        )

    def _setup_model(self) -> None:
        self._check_hyperparameters()
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        check_spaces(self.observation_space, self.action_space)
        arguments = {name: value for name, (value, _) in self._policy_arguments().items()}
        # An entry equal to DVRL's own (checked above) is passed once, by name.
        policy_kwargs = {key: value for key, value in self.policy_kwargs.items() if key not in arguments}
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space, self.action_space, self.lr_schedule, **arguments, **policy_kwargs  # type: ignore[arg-type]
        )
        self.policy = self.policy.to(self.device)
        # A loaded model: continue from the saved belief and backpropagation window (see save()).
        training_state = self.__dict__.pop(TRAINING_STATE_KEY, None)
        if training_state is not None and self._last_obs is not None:
            self._set_training_state(training_state)

    def _make_rollout_buffer(self) -> DVRLRolloutBuffer:
        return DVRLRolloutBuffer(
            self.n_steps,
            self.multiplier_backprop_length,
            self.observation_space,
            self.action_space,
            self.n_envs,
            self.policy.belief_particles,
            self.policy.h_dim,
            self.policy.belief_z_dim,
            self.policy.action_input_dim,
            self.device,
            self.gamma,
            sliding=self.sliding_window,
        )

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, BaseCallback]:
        if self.n_envs < 2 and any(isinstance(m, th.nn.BatchNorm1d) for m in self.policy.modules()):
            raise ValueError(
                "batch_norm=True normalises the action (and vector observation) encodings over the environments in "
                "training mode: learn with n_envs >= 2 (the original used 16)."
            )
        fresh_obs = reset_num_timesteps or self._last_obs is None
        result = super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        # The reset observation (the later ones are checked as they arrive in collect_rollouts).
        check_finite_data(self._last_obs, "observation", "DVRL")
        if fresh_obs or self._belief is None or self._belief.h.shape[0] != self.n_envs:
            # New episodes everywhere: start from the initial belief and an empty backpropagation window.
            self._belief = self.policy.initial_belief(self.n_envs)
            self._pending_noise = None
            self.rollout_buffer = self._make_rollout_buffer()
        return result

    def collect_rollouts(  # type: ignore[override]
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: DVRLRolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """
        Collect ``n_rollout_steps`` vectorised steps: per step update the belief with the observation (storing the
        filter's random numbers), act, and store the step; at the end bootstrap with the value of the next belief.

        :param env: The training environment.
        :param callback: Callback called at every step (and at the start and end of the rollout).
        :param rollout_buffer: The DVRL rollout buffer.
        :param n_rollout_steps: Steps per environment.
        :return: False if the callback stopped training.
        """
        assert self._last_obs is not None and self._belief is not None, "No previous observation was provided"
        self.policy.set_training_mode(False)
        n_envs = env.num_envs
        rollout_buffer.start_rollout(self._belief)
        callback.on_rollout_start()
        # The weights do not change during a rollout: regroup them for the filter step once.
        with th.no_grad():
            weights = self.policy.fused_weights() if self.policy.use_particle_filter else None

        for _ in range(n_rollout_steps):
            noise = self._pending_noise if self._pending_noise is not None else self.policy.sample_noise(n_envs)
            self._pending_noise = None
            obs_tensor = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
            starts = th.as_tensor(self._last_episode_starts, dtype=th.float32, device=self.device)
            with th.no_grad():
                actions, values, _, out = self.policy.step(self._belief, obs_tensor, starts, noise, weights=weights)  # type: ignore[arg-type]
            np_actions = actions.cpu().numpy()
            clipped_actions = np_actions
            if isinstance(self.action_space, spaces.Box):
                # The Gaussian is unbounded: clip for the env, keep the sample for the loss and the belief.
                clipped_actions = np.clip(np_actions, self.action_space.low, self.action_space.high)

            new_obs, rewards, dones, infos = env.step(clipped_actions)
            # Checked before anything is stored: a NaN observation would otherwise reach the filter (and end in an
            # invalid action distribution), a NaN reward the returns and the loss.
            check_finite_data(new_obs, "observation", "DVRL")
            check_finite_data(rewards, "reward", "DVRL")
            self.num_timesteps += n_envs
            # The belief before the next observation: this step's particles and the action just taken.
            self._belief = out.belief._replace(prev_action=self.policy.action_input(actions))

            callback.update_locals(locals())
            if not callback.on_step():
                # The partial rollout cannot be replayed: the next update starts a new window from here.
                rollout_buffer.reset()
                self._last_obs, self._last_episode_starts = new_obs, dones  # type: ignore[assignment]
                return False

            self._update_info_buffer(infos, dones)
            rewards = rewards.astype(np.float32)
            # Episodes cut by a time limit are bootstrapped with the value of the belief after their last
            # observation (SB3's A2C does the same with the terminal observation, see SB3 issue #633).
            truncated = [
                i
                for i, done in enumerate(dones)
                if done and infos[i].get("terminal_observation") is not None and infos[i].get("TimeLimit.truncated", False)
            ]
            if truncated:
                terminal_obs_array = np.stack([infos[i]["terminal_observation"] for i in truncated])
                # Checked in a batch of all envs (the others' rows are the checked new observations), so that the
                # message names the env index.
                all_obs = np.array(new_obs)
                all_obs[truncated] = terminal_obs_array
                check_finite_data(all_obs, "terminal observation", "DVRL")
                index = th.as_tensor(truncated, device=self.device)
                terminal_obs = obs_as_tensor(terminal_obs_array, self.device)
                sub_belief = Belief(*(x[index] for x in self._belief))
                with th.no_grad():
                    _, terminal_values, _, _ = self.policy.step(
                        sub_belief,
                        terminal_obs,  # type: ignore[arg-type]
                        th.zeros(len(truncated), device=self.device),
                        self.policy.sample_noise(len(truncated)),
                        weights=weights,
                    )
                rewards[truncated] += self.gamma * terminal_values.cpu().numpy()

            rollout_buffer.add(obs_tensor, starts, noise, actions, rewards, values)  # type: ignore[arg-type]
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones

        with th.no_grad():
            # V of the belief after the last observation; its filter noise is kept for the next rollout's first step.
            self._pending_noise = self.policy.sample_noise(n_envs)
            dones_tensor = th.as_tensor(dones, dtype=th.float32, device=self.device)
            _, last_values, _, _ = self.policy.step(
                self._belief,
                obs_as_tensor(new_obs, self.device),  # type: ignore[arg-type]
                dones_tensor,
                self._pending_noise,
                weights=weights,
            )
        rollout_buffer.compute_returns(last_values, dones)

        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def replay_window(self) -> tuple[list[Belief], list[th.Tensor], list[th.Tensor]]:
        """
        Recompute the belief over the stored window (oldest rollout first) with the current weights, from the
        detached belief at the window's start and with the stored random numbers, keeping the autograd graph.

        :return: For every step of the newest rollout: the belief after the step (``prev_action`` = the consumed
            one), ``phi(z_t)`` and the ELBO term ``[n_envs]``.
        """
        buffer = self.rollout_buffer
        belief = buffer.window_start_belief()
        beliefs: list[Belief] = []
        phi_zs: list[th.Tensor] = []
        elbos: list[th.Tensor] = []
        weights = self.policy.fused_weights() if self.policy.use_particle_filter else None
        for is_newest, inputs in buffer.window():
            for t in range(self.n_steps):
                noise = FilterNoise(inputs.uniforms[t], inputs.normals[t])
                out = self.policy.filter_step(
                    belief,
                    inputs.observations[t],
                    inputs.episode_starts[t],
                    noise,
                    weights,
                    # Before the newest rollout the weights only pick ancestors: no graph needed for them.
                    weight_gradients=is_newest,
                )
                if is_newest:
                    beliefs.append(out.belief)
                    phi_zs.append(out.phi_z)
                    elbos.append(out.elbo)
                belief = out.belief._replace(prev_action=self.policy.action_input(inputs.actions[t]))
        return beliefs, phi_zs, elbos

    def train(self) -> None:
        """
        One update: replay the filter over the window, then an A2C step on the newest rollout with the ELBO term
        (plain n-step returns, advantage detached in the policy term), global grad-norm clip (or separate clips of the
        A2C and the model gradients, ``model_max_grad_norm``), RMSprop/Adam step. Logs the loss terms, the explained
        variance, the gradient norm(s) before clipping and, with the particle filter, the particles' effective sample
        size.
        """
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        buffer = self.rollout_buffer
        norm_statistics = {name: statistic.clone() for name, statistic in self.policy.named_buffers()}

        beliefs, phi_zs, elbos = self.replay_window()
        h = th.cat([b.h for b in beliefs])
        phi_z = th.cat(phi_zs)
        log_weights = th.cat([b.log_weights for b in beliefs])
        features = self.policy.belief_features(h, phi_z, log_weights)
        distribution, pre_activation = self.policy.action_head(features)
        values = self.policy.value_net(features).flatten()

        actions = buffer.actions[buffer.newest].reshape(self.n_steps * self.n_envs, -1)
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        log_prob = distribution.log_prob(actions)
        entropy = distribution.entropy()
        assert entropy is not None

        returns = buffer.returns.flatten()
        advantages = returns - values.detach()
        if self.normalize_advantage:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = -(advantages * log_prob).mean()
        value_loss = (returns - values).pow(2).mean()
        entropy_loss = -entropy.mean()
        pre_activation_loss = pre_activation.pow(2).sum(dim=-1).mean()
        elbo = th.stack(elbos).mean()
        rl_loss = (
            self.policy_coef * policy_loss
            + self.vf_coef * value_loss
            + self.ent_coef * entropy_loss
            + self.pre_activation_coef * pre_activation_loss
        )
        model_loss = -self.elbo_coef * elbo
        what = loss_name(
            {
                "A2C policy": policy_loss,
                "A2C value": value_loss,
                "A2C entropy": entropy_loss,
                "A2C pre-activation": pre_activation_loss,
                "ELBO": elbo,
            }
        )
        try:
            if self.model_max_grad_norm is None:
                grad_norms = {"grad_norm": checked_step(self.policy.optimizer, rl_loss + model_loss, what, self.max_grad_norm)}
            else:
                rl_norm, model_norm = checked_split_step(
                    self.policy.optimizer,
                    [(rl_loss, self.max_grad_norm), (model_loss, self.model_max_grad_norm)],
                    what,
                )
                grad_norms = {"grad_norm_a2c": rl_norm, "grad_norm_model": model_norm}
        except ValueError:
            # The replay ran in training mode, so BatchNorm's running statistics already moved: put them back too, so
            # that the model (and its save) is that of the last finite update.
            with th.no_grad():
                for name, statistic in self.policy.named_buffers():
                    statistic.copy_(norm_statistics[name])
            raise
        self._n_updates += 1

        explained_var = explained_variance(buffer.values.flatten().cpu().numpy(), returns.cpu().numpy())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/explained_variance", explained_var)
        self.logger.record("train/entropy_loss", entropy_loss.item())
        self.logger.record("train/policy_loss", policy_loss.item())
        self.logger.record("train/pre_activation_loss", pre_activation_loss.item())
        self.logger.record("train/value_loss", value_loss.item())
        self.logger.record("train/elbo", elbo.item())
        for name, norm in grad_norms.items():  # before clipping (the RNN baseline has no model term)
            if self.use_particle_filter or name != "grad_norm_model":
                self.logger.record(f"train/{name}", norm.item())
        if self.use_particle_filter:
            # Effective sample size 1 / sum_k w_k^2 of the normalised weights (Doucet and Johansen's degeneracy
            # measure; K when all particles count equally, 1 when one carries the whole belief), mean over the steps.
            self.logger.record("train/ess", effective_sample_size(log_weights.detach()).mean().item())
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Iterable[str] | None = None,
        include: Iterable[str] | None = None,
    ) -> None:
        """
        Save all the attributes of the object and the model parameters in a zip-file, with the random generators'
        states (:class:`~sb3_bayes.common.random_state.ExactResumeMixin`) and the training state: the belief of the
        training environments, the filter noise drawn ahead for the next step and the backpropagation window (the
        next update replays the filter from rollouts collected before the save). Loaded with the same environment
        and ``force_reset=False``, training continues exactly as without the save; otherwise new episodes start from
        the initial belief.

        :param path: Path to the file where the rl agent should be saved.
        :param exclude: Name of parameters that should be excluded in addition to the default ones.
        :param include: Name of parameters that might be excluded but should be included anyway.
        """
        setattr(self, TRAINING_STATE_KEY, self._get_training_state())
        try:
            super().save(path, exclude=exclude, include=include)
        finally:
            delattr(self, TRAINING_STATE_KEY)

    def _get_training_state(self) -> dict[str, Any] | None:
        """
        The state a run continues from, on the CPU (so that a save loads on any device).

        :return: The belief, the pending noise and the rollout buffer's state, or None before training.
        """
        if self._belief is None:
            return None
        return dict(
            belief=tuple(x.cpu() for x in self._belief),
            pending_noise=None if self._pending_noise is None else tuple(x.cpu() for x in self._pending_noise),
            rollout_buffer=self.rollout_buffer.state_dict(),
        )

    def _set_training_state(self, state: dict[str, Any]) -> None:
        """
        Continue from a saved :meth:`_get_training_state`, unless the loaded settings change its shapes (another
        ``n_envs``, ``n_particles``, ``n_steps``, ...): then the next ``learn`` starts from the initial belief.

        :param state: The saved state.
        """
        belief = Belief(*(x.to(self.device) for x in state["belief"]))
        initial = self.policy.initial_belief(self.n_envs)
        rollout_buffer = self._make_rollout_buffer()
        if any(x.shape != y.shape for x, y in zip(belief, initial)) or not rollout_buffer.load_state_dict(
            state["rollout_buffer"]
        ):
            return
        self._belief, self.rollout_buffer = belief, rollout_buffer
        noise = state["pending_noise"]
        self._pending_noise = None if noise is None else FilterNoise(*(x.to(self.device) for x in noise))

    def _excluded_save_params(self) -> list[str]:
        # Saved as the training state instead (on the CPU, see save()).
        return [*super()._excluded_save_params(), "_belief", "_pending_noise"]


def effective_sample_size(log_weights: th.Tensor) -> th.Tensor:
    """
    Effective sample size ``1 / sum_k w_k^2`` of the normalised importance weights ``w_k``.

    :param log_weights: Unnormalised log weights ``[..., K]``.
    :return: The effective sample size ``[...]``, in ``[1, K]``.
    """
    return th.exp(-th.logsumexp(2.0 * th.log_softmax(log_weights, dim=-1), dim=-1))


def checked_split_step(optimizer: th.optim.Optimizer, parts: list[tuple[th.Tensor, float]], what: str) -> list[th.Tensor]:
    """
    One optimiser update on a sum of losses whose gradients are clipped separately: for each ``(loss, bound)`` the
    gradient ``g_i`` over all the optimiser's parameters is scaled by ``min(1, bound / (||g_i|| + 1e-6))`` (what
    ``clip_grad_norm_`` does to one gradient), then the scaled gradients are added and one step is taken. As
    :func:`~sb3_bayes.common.utils.checked_step`, a non-finite loss or gradient raises a ``ValueError`` before the
    step, so the weights stay those of the last finite update.

    :param optimizer: The optimiser of all the parameters.
    :param parts: ``(loss, max_grad_norm)`` pairs (scalar losses sharing one autograd graph).
    :param what: Which loss, for the message.
    :return: The gradients' norms before clipping, one per part.
    """
    optimizer.zero_grad()
    total = th.stack([loss.detach() for loss, _ in parts]).sum()
    check_finite_loss(total, what)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    summed: list[th.Tensor | None] = [None] * len(params)
    norms = []
    for i, (loss, bound) in enumerate(parts):
        if not loss.requires_grad:  # e.g. the ELBO of the RNN baseline, a constant
            norms.append(th.zeros((), device=total.device))
            continue
        # The graph of the replayed window is shared by the parts: keep it until the last backward pass.
        grads = th.autograd.grad(loss, params, retain_graph=i < len(parts) - 1, allow_unused=True)
        norm = checked_gradient_norm(optimizer, grads, what)
        scale = th.clamp(bound / (norm + 1e-6), max=1.0)
        for j, grad in enumerate(grads):
            if grad is not None:
                previous = summed[j]
                summed[j] = grad * scale if previous is None else previous + grad * scale
        norms.append(norm)
    for param, total_grad in zip(params, summed, strict=True):
        param.grad = total_grad
    optimizer.step()
    return norms


def loss_name(terms: dict[str, th.Tensor]) -> str:
    """
    The name of the DVRL loss for :func:`~sb3_bayes.common.utils.checked_step`'s messages, naming the non-finite terms
    (one check of all of them, cheap next to the replay and the backward pass).

    :param terms: The loss terms by name (scalars).
    :return: ``"the DVRL loss"``, or e.g. ``"the DVRL loss (non-finite term: ELBO)"``.
    """
    finite = th.isfinite(th.stack([term.detach() for term in terms.values()])).tolist()
    bad = [name for name, ok in zip(terms, finite, strict=True) if not ok]
    if not bad:
        return "the DVRL loss"
    return f"the DVRL loss (non-finite term{'s' if len(bad) > 1 else ''}: {', '.join(bad)})"

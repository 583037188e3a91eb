"""
BayesianDQN: DQN with a posterior over the Q-network and Thompson-sampling exploration (BBQN, BDQN and bootstrapped
ensemble with randomized prior functions).
"""

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.dqn import DQN
from torch.func import functional_call
from typing_extensions import Unpack

from sb3_bayes.bayes_dqn.buffers import BOOTSTRAP_BUFFERS, BootstrapMaskMixin, bootstrap_masks
from sb3_bayes.bayes_dqn.policies import (
    HEADS,
    BayesianDQNPolicy,
    BayesianQNetwork,
    CnnPolicy,
    MlpPolicy,
    ThompsonLinearHead,
    q_mode,
)
from sb3_bayes.common.base_class import AlgorithmSettings, NamedRunsMixin, make_checked_env
from sb3_bayes.common.bayesian_layers import kl_divergence, refresh_weights
from sb3_bayes.common.buffers import PlaceholderReplayBufferMixin
from sb3_bayes.common.consolidation import ConsolidationMixin, ReplaySamples
from sb3_bayes.common.ewc import diagonal_fisher
from sb3_bayes.common.random_state import ExactResumeMixin
from sb3_bayes.common.utils import check_discrete_actions
from sb3_bayes.common.validation import ParameterValidator

#: The algorithm's own arguments that the policy builds the network with (passed on through ``policy_kwargs``).
POLICY_ARGUMENTS = ("head", "blr_prior_var", "blr_noise_var")


class RecentTransitions(NamedTuple):
    """Transitions read from the end of the replay buffer, with their Double-DQN targets."""

    observations: th.Tensor
    actions: th.Tensor  # [n] long
    targets: th.Tensor  # [n]


class BayesianDQN(ExactResumeMixin, NamedRunsMixin, ConsolidationMixin, PlaceholderReplayBufferMixin, DQN):
    """
    Bayesian Deep Q-Network: DQN whose Q-network carries a posterior over its weights and explores by Thompson sampling
    (one set of weights drawn per episode, or every ``resample_every`` steps, and followed greedily), with
    Double-DQN targets computed from the posterior means of the online and target networks.

    Three heads (``head``):

    - ``"bbb"``: BBQN (Lipton et al., 2018, https://arxiv.org/abs/1608.05081): all fully-connected layers are
      Bayes-by-backprop layers (Blundell et al., 2015) trained with the local reparameterisation trick on
      ``Huber TD loss + kl_weight * KL(q || prior) / N`` with ``N`` the transitions in the replay buffer (the KL is that
      of the whole data set, so it is divided by its size, not by the batch).
    - ``"blr"``: BDQN (Azizzadenesheli et al., 2018, https://arxiv.org/abs/1802.04412): a deterministic network gives
      features ``phi(s)``; every action has a closed-form Bayesian linear regression on them (prior variance
      ``blr_prior_var``, noise variance ``blr_noise_var``), refitted every ``posterior_update_freq`` steps on the most
      recent ``posterior_window`` transitions; the features are trained on the TD loss through the posterior mean.
      ``policy_kwargs=dict(prior_features=K)`` appends ``K`` scaled random Fourier features of the observation to the
      regression's inputs (a random-feature prior, as PSDRL's): uncertainty that only data near a state remove.
    - ``"ensemble"``: Bootstrapped DQN with randomized prior functions (Osband, Aslanides and Cassirer, NeurIPS 2018,
      https://arxiv.org/abs/1806.03335): ``n_heads`` members ``Q_k = f_k + beta p_k`` (eq. 2; ``p_k`` a fixed random
      network, ``beta = prior_scale``; both in ``policy_kwargs``), member ``k`` trained on its own Double-DQN targets
      (its own online and target networks) on the transitions its bootstrap mask keeps (``Bernoulli(bootstrap_prob)``
      per transition and member, Algorithm 1); one member drawn per episode and environment, the members' mean for
      deterministic actions.

    Continual learning (:class:`~sb3_bayes.common.consolidation.ConsolidationMixin`, shared with BayesianDDPG, with the
    same meaning of every argument): ``consolidation="ewc"`` (Kirkpatrick et al., 2017, eq. 3; ``ewc_online`` for
    Schwarz et al., 2018) adds ``ewc_lambda * sum F (theta - theta*)^2`` on the parameters of ``ewc_modules`` once
    :meth:`consolidate` has been called at a task switch, with the empirical Fisher of the TD loss (see
    :meth:`_ewc_fisher`); ``"vcl"`` (Nguyen et al., 2018, ``"bbb"`` head only) makes the posterior the next prior.

    Every argument and ``policy_kwargs`` entry is checked when the model is built (and at ``load``); a NaN or inf
    observation or reward raises before it is stored, and a non-finite loss or gradient before the optimiser step
    (the weights stay those of the last finite update). ``save`` stores the random generators' states, so training
    resumes exactly after ``load`` (:class:`~sb3_bayes.common.random_state.ExactResumeMixin`).

    :param policy: ``"MlpPolicy"`` or ``"CnnPolicy"`` (or a policy class).
    :param env: The environment to learn from (if registered in Gym, can be str).
    :param head: ``"bbb"`` (Bayes-by-backprop Q-network), ``"blr"`` (Bayesian linear regression on the last layer) or
        ``"ensemble"`` (bootstrapped members with randomized prior functions).
    :param kl_weight: Weight of the per-transition KL term (``"bbb"``).
    :param resample_every: Thompson schedule of the training environments: 0 draws new weights for an environment at
        each of its episode starts; ``k > 0`` redraws all every ``k`` steps (BDQN's ``T_sample``); None picks the
        head's default (``"bbb"`` and ``"ensemble"``: 0, ``"blr"``: 1000). ``predict`` always redraws where
        ``episode_start`` is true.
    :param blr_prior_var: Prior variance of the ``"blr"`` weights (BDQN: 0.001).
    :param blr_noise_var: Noise variance of the ``"blr"`` regression (BDQN: 1).
    :param posterior_update_freq: Steps between refits of the ``"blr"`` posterior (BDQN: 1000).
    :param posterior_window: Most recent transitions the ``"blr"`` posterior is fitted on (BDQN: 10k).
    :param bootstrap_prob: Probability ``p`` in ``(0, 1]`` that a member of the ``"ensemble"`` head trains on a
        transition (its bootstrap mask; 1: every member on all data, the randomized priors alone diversify them).
    :param consolidation: ``"none"``, ``"ewc"`` or ``"vcl"``: what :meth:`consolidate` does at a task switch.
    :param ewc_lambda: Weight of the EWC penalty (>= 0).
    :param ewc_online: Online EWC (decaying old Fisher terms, Schwarz et al., 2018) instead of their sum.
    :param ewc_decay: Decay of the old Fisher in online EWC, in ``[0, 1]``.
    :param ewc_modules: Modules whose parameters EWC anchors, by attribute path: ``"q_net"`` or parts of it
        (``"q_net.features_extractor"``, ``"q_net.hidden"``, ``"q_net.head"``).
    :param learning_rate: The learning rate, it can be a function of the current progress remaining (from 1 to 0).
    :param buffer_size: Size of the replay buffer.
    :param learning_starts: How many steps of the model to collect transitions for before learning starts.
    :param batch_size: Minibatch size for each gradient update.
    :param tau: The soft update coefficient (1 for hard updates).
    :param gamma: The discount factor.
    :param train_freq: Update the model every ``train_freq`` steps (or ``(n, "episode")``).
    :param gradient_steps: Gradient steps per rollout (-1: as many as environment steps).
    :param replay_buffer_class: Replay buffer class to use (None: automatic).
    :param replay_buffer_kwargs: Keyword arguments of the replay buffer.
    :param optimize_memory_usage: Memory efficient replay buffer variant.
    :param n_steps: n-step returns (uses SB3's ``NStepReplayBuffer``).
    :param target_update_interval: Environment steps between target network updates.
    :param exploration_fraction: Fraction of training over which epsilon decays.
    :param exploration_initial_eps: Initial epsilon (near zero: Thompson sampling explores).
    :param exploration_final_eps: Final epsilon.
    :param max_grad_norm: Maximum gradient norm.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance.
    :param settings: The arguments every algorithm passes on to SB3's ``BaseAlgorithm`` unchanged, by name and with SB3's
        defaults (:class:`~sb3_bayes.common.base_class.AlgorithmSettings`): ``stats_window_size``, ``tensorboard_log``,
        ``policy_kwargs``, ``verbose``, ``seed``, ``device``. Here ``policy_kwargs`` holds the policy's arguments: network
        sizes, ``bayesian_layer_kwargs``, ...
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy, "CnnPolicy": CnnPolicy}
    policy: BayesianDQNPolicy  # type: ignore[assignment]
    q_net: BayesianQNetwork  # type: ignore[assignment]
    q_net_target: BayesianQNetwork  # type: ignore[assignment]
    consolidated_networks = ("q_net",)

    def __init__(
        self,
        policy: str | type[BayesianDQNPolicy],
        env: GymEnv | str | None,
        head: str = "bbb",
        kl_weight: float = 1.0,
        resample_every: int | None = None,
        blr_prior_var: float = 1e-3,
        blr_noise_var: float = 1.0,
        posterior_update_freq: int = 1000,
        posterior_window: int = 10_000,
        bootstrap_prob: float = 0.5,
        consolidation: str = "none",
        ewc_lambda: float = 1e4,
        ewc_online: bool = False,
        ewc_decay: float = 1.0,
        ewc_modules: str | Sequence[str] = ("q_net",),
        learning_rate: float | Schedule = 1e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 32,
        tau: float = 1.0,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 4,
        gradient_steps: int = 1,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        target_update_interval: int = 10000,
        exploration_fraction: float = 0.1,
        exploration_initial_eps: float = 0.001,
        exploration_final_eps: float = 0.001,
        max_grad_norm: float = 10,
        _init_setup_model: bool = True,
        **settings: Unpack[AlgorithmSettings],
    ) -> None:
        env = make_checked_env(type(self).__name__, env, settings, self._check_spaces)
        super().__init__(
            policy,
            env,  # type: ignore[arg-type]
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            n_steps=n_steps,
            target_update_interval=target_update_interval,
            exploration_fraction=exploration_fraction,
            exploration_initial_eps=exploration_initial_eps,
            exploration_final_eps=exploration_final_eps,
            max_grad_norm=max_grad_norm,
            _init_setup_model=False,
            **settings,
        )
        self.head = head
        self.kl_weight = kl_weight
        self.resample_every = resample_every
        self.blr_prior_var = blr_prior_var
        self.blr_noise_var = blr_noise_var
        self.posterior_update_freq = posterior_update_freq
        self.posterior_window = posterior_window
        self.bootstrap_prob = bootstrap_prob
        # Seed of the "ensemble" head's bootstrap masks (drawn at the first setup, then saved with the model).
        self.bootstrap_seed: int | None = None
        self._set_consolidation_arguments(consolidation, ewc_lambda, ewc_online, ewc_decay, ewc_modules)
        # Step of the last posterior refit ("blr"; None: refit at the first training call) and its count.
        self._last_posterior_update: int | None = None
        self.n_posterior_updates = 0
        if _init_setup_model:
            self._setup_model()

    @staticmethod
    def _check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
        check_discrete_actions(action_space, "BayesianDQN", alternative="BayesianDDPG")
        if isinstance(observation_space, (spaces.Dict, spaces.Tuple)):
            raise ValueError(
                f"BayesianDQN does not support {type(observation_space).__name__} observation spaces, got "
                f"{observation_space}: flatten it (gymnasium's FlattenObservation)."
            )

    @property
    def thompson_interval(self) -> int:
        """Steps between Thompson resamples of all training environments (0: at each environment's episode start)."""
        if self.resample_every is not None:
            return self.resample_every
        return 1000 if self.head == "blr" else 0

    def _check_hyperparameters(self) -> None:
        """
        Check every constructor argument (``policy_kwargs`` entries are checked by the policy's constructor): at
        construction and at ``load(**kwargs)``, before anything is allocated. Raises a ``HyperparameterValueError`` or
        ``HyperparameterTypeError`` that names the argument, the value and what is allowed.
        """
        check = ParameterValidator(type(self).__name__)
        self._check_off_policy_hyperparameters(check)
        self.head = check.choice("head", self.head, HEADS)
        self._check_consolidation_hyperparameters(
            check,
            vcl_allowed=self.head == "bbb",
            vcl_needs=f"'none' or 'ewc' with head='{self.head}' (VCL replaces the prior of Bayes-by-backprop layers: "
            "head='bbb')",
        )
        self.kl_weight = check.non_negative("kl_weight", self.kl_weight)
        self.resample_every = check.optional(check.integer, "resample_every", self.resample_every, minimum=0)
        self.blr_prior_var = check.positive("blr_prior_var", self.blr_prior_var)
        self.blr_noise_var = check.positive("blr_noise_var", self.blr_noise_var)
        self.posterior_update_freq = check.integer("posterior_update_freq", self.posterior_update_freq)
        self.posterior_window = check.integer("posterior_window", self.posterior_window)
        self.bootstrap_prob = check.fraction("bootstrap_prob", self.bootstrap_prob)
        if self.head == "ensemble" and self.replay_buffer_class is not None:
            # The bootstrap masks need the rows of each minibatch: SB3's buffers, with the transition count added.
            supported = (*BOOTSTRAP_BUFFERS, *BOOTSTRAP_BUFFERS.values())
            check.relation(
                "replay_buffer_class",
                self.replay_buffer_class,
                self.replay_buffer_class in supported,
                "None, ReplayBuffer or NStepReplayBuffer with head='ensemble' (its bootstrap masks)",
            )
        self.target_update_interval = check.integer("target_update_interval", self.target_update_interval)
        self.exploration_fraction = check.fraction("exploration_fraction", self.exploration_fraction, zero=True)
        self.exploration_initial_eps = check.fraction("exploration_initial_eps", self.exploration_initial_eps, zero=True)
        self.exploration_final_eps = check.fraction("exploration_final_eps", self.exploration_final_eps, zero=True)
        self.max_grad_norm = check.positive("max_grad_norm", self.max_grad_norm)
        for key in POLICY_ARGUMENTS:
            # The network settings are constructor arguments of the algorithm; the policy builds them.
            value = self.policy_kwargs.get(key, getattr(self, key))
            check.relation(key, value, value == getattr(self, key), "passed to BayesianDQN itself, not in policy_kwargs")

    def _setup_model(self) -> None:
        self._check_hyperparameters()
        self._check_spaces(self.observation_space, self.action_space)
        # A copy: never mutate the caller's dict.
        self.policy_kwargs = {**self.policy_kwargs, **{key: getattr(self, key) for key in POLICY_ARGUMENTS}}
        with warnings.catch_warnings():
            if self.head == "ensemble":
                self._use_bootstrap_buffer()
                # SB3 warns that a buffer class given with n_steps > 1 ignores n_steps: ours is set up for them.
                warnings.filterwarnings("ignore", message="`n_steps=.*` is ignored because a custom `replay_buffer_class`")
            super()._setup_model()  # without an env, a one-row placeholder replay buffer (PlaceholderReplayBufferMixin)
        if self.head == "ensemble" and self.bootstrap_seed is None:
            # Drawn after SB3 seeded the generators, so `seed` fixes the masks; a loaded model keeps its saved seed.
            self.bootstrap_seed = int(np.random.randint(2**62, dtype=np.int64))
        self._setup_consolidation()

    def _use_bootstrap_buffer(self) -> None:
        """
        Replace the replay buffer class by its :class:`~sb3_bayes.bayes_dqn.buffers.BootstrapMaskMixin` version, SB3's
        buffer that also tells which transitions a minibatch holds (the ``"ensemble"`` head's bootstrap masks), set up
        for n-step returns as SB3 would (``n_steps > 1`` and no buffer class given).
        """
        if self.replay_buffer_class is None and self.n_steps > 1:
            self.replay_buffer_kwargs = {**self.replay_buffer_kwargs, "n_steps": self.n_steps, "gamma": self.gamma}
        base = self.replay_buffer_class or (NStepReplayBuffer if self.n_steps > 1 else ReplayBuffer)
        self.replay_buffer_class = BOOTSTRAP_BUFFERS.get(base, base)

    # ----------------------------------------------------------------------------------------------------------------
    # Acting: Thompson sampling
    # ----------------------------------------------------------------------------------------------------------------
    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """
        Greedy action w.r.t. one held posterior sample per environment (``deterministic=False``; the samples of the
        environments where ``episode_start`` is true are redrawn first, so each episode follows one sample), or
        w.r.t. the posterior mean (``deterministic=True``). Epsilon-greedy on top, as in DQN (``exploration_rate``).

        :param observation: The input observation.
        :param state: Unused (no recurrent state), returned as is.
        :param episode_start: Which environments start an episode.
        :param deterministic: Whether to act with the posterior mean.
        :return: The actions and ``state``.
        """
        if not deterministic:
            # Here, not only in the policy's predict: DQN's epsilon-greedy step bypasses the policy, and the episode
            # that starts on it must still get its own sample.
            self.policy.prepare_thompson(observation, episode_start)
        return super().predict(observation, state, None, deterministic)

    @contextlib.contextmanager
    def _rollout_thompson(self) -> Iterator[None]:
        with self.policy.rollout_thompson(self.n_envs):
            yield

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        # The training environments act with their own held samples.
        with self._rollout_thompson():
            return super()._sample_action(learning_starts, action_noise, n_envs)

    def _episodes_ended(self, indices: np.ndarray) -> None:
        if self.thompson_interval == 0:
            # Thompson sampling per episode (BBQN): the environments that start a new episode draw new weights.
            with self._rollout_thompson():
                self.policy.resample(indices=indices)

    def _on_step(self) -> None:
        super()._on_step()  # target network (hard or Polyak update) and epsilon schedule
        if self.head == "blr" and self._n_calls % max(self.target_update_interval // self.n_envs, 1) == 0:
            # BDQN's target weights follow the target network's schedule.
            online_head, target_head = self.q_net.head, self.q_net_target.head
            assert isinstance(online_head, ThompsonLinearHead) and isinstance(target_head, ThompsonLinearHead)
            polyak_update([online_head.mean_weight], [target_head.mean_weight], self.tau)
        interval = self.thompson_interval
        if interval > 0 and self.num_timesteps // interval != (self.num_timesteps - self.n_envs) // interval:
            with self._rollout_thompson():
                self.policy.resample()

    # ----------------------------------------------------------------------------------------------------------------
    # Training
    # ----------------------------------------------------------------------------------------------------------------
    def _td_targets(
        self, rewards: th.Tensor, next_observations: th.Tensor, dones: th.Tensor, discounts: Any, per_member: bool = False
    ) -> th.Tensor:
        """
        Double-DQN targets (van Hasselt et al., 2016) with posterior means: the online network's mean weights pick the
        next action, the target network's mean weights evaluate it. With ``per_member`` (``"ensemble"`` head), every
        member's own targets: its online network picks, its target network evaluates (Osband et al., 2018, Alg. 1).

        :return: ``[n, 1]`` targets (``[K, n, 1]`` per member).
        """
        with th.no_grad(), q_mode(self.q_net, "mean"), q_mode(self.q_net_target, "mean"):
            if per_member:
                prior = self.q_net.scaled_prior(next_observations)  # the target network's is the same (frozen)
                online = self.q_net.member_q_values(next_observations, prior)
                target = self.q_net_target.member_q_values(next_observations, prior)
            else:
                online, target = self.q_net(next_observations), self.q_net_target(next_observations)
            next_q = target.gather(-1, online.argmax(dim=-1, keepdim=True))
            return rewards + (1 - dones) * discounts * next_q

    def _recent_transitions(self, n_transitions: int) -> Iterator[RecentTransitions]:
        """
        The most recent ``n_transitions`` transitions of the replay buffer, in chunks, with their Double-DQN targets
        (see :meth:`ConsolidationMixin._recent_replay_samples`).
        """
        for data in self._recent_replay_samples(n_transitions):
            assert isinstance(data.observations, th.Tensor)  # no Dict observations (see _check_spaces)
            yield RecentTransitions(data.observations, data.actions.long().reshape(-1), self._replay_targets(data).reshape(-1))

    def _replay_targets(self, data: ReplaySamples, per_member: bool = False) -> th.Tensor:
        """
        :return: The ``[n, 1]`` Double-DQN targets of replayed transitions (n-step discounts where the buffer has them);
            ``[K, n, 1]``, every member's own, with ``per_member``.
        """
        discounts = data.discounts if data.discounts is not None else self.gamma
        return self._td_targets(
            data.rewards, data.next_observations, data.dones, discounts, per_member  # type: ignore[arg-type]
        )

    def refresh_posterior(self) -> None:
        """
        Refit BDQN's per-action Bayesian linear regression (``"blr"`` head) on the online network's features of the
        most recent ``posterior_window`` transitions, with Double-DQN targets (Azizzadenesheli et al., 2018, Alg. 1).
        """
        posterior = self.policy.blr_posterior
        if posterior is None:
            raise ValueError("refresh_posterior needs head='blr'.")

        def chunks() -> Iterator[tuple[th.Tensor, th.Tensor, th.Tensor]]:
            for batch in self._recent_transitions(self.posterior_window):
                with th.no_grad():
                    yield self.q_net.penultimate(batch.observations), batch.actions, batch.targets

        posterior.fit(chunks())
        head = self.q_net.head
        assert isinstance(head, ThompsonLinearHead)
        head.mean_weight = posterior.mean.to(head.mean_weight.dtype)
        self._last_posterior_update = self.num_timesteps
        self.n_posterior_updates += 1
        self.logger.record("train/n_posterior_updates", self.n_posterior_updates)

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        assert self.replay_buffer is not None
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        if self.head == "blr" and (
            self._last_posterior_update is None
            or self.num_timesteps - self._last_posterior_update >= self.posterior_update_freq
        ):
            self.refresh_posterior()
        # N of the KL term: every transition in the buffer (Blundell et al., 2015, eq. 8 per data point).
        n_transitions = max(self.replay_buffer.size() * self.replay_buffer.n_envs, 1)
        losses, td_losses, kls, penalties = [], [], [], []
        for _ in range(gradient_steps):
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            if self.head == "ensemble":
                td_loss = self._ensemble_td_loss(replay_data)
            else:
                target_q_values = self._replay_targets(replay_data)
                # Local reparameterisation: fresh weight noise per transition ("bbb"); the posterior mean ("blr").
                with q_mode(self.q_net, "sample"):
                    current_q_values = self.q_net(replay_data.observations).gather(1, replay_data.actions.long())
                td_loss = F.smooth_l1_loss(current_q_values, target_q_values)
            loss = td_loss
            if self.head == "bbb":
                kl = kl_divergence(self.q_net)
                loss = loss + self.kl_weight * kl / n_transitions
                kls.append(float(kl.detach()))
            total_loss, penalty = self._consolidated_step(
                "q_net", self.policy.optimizer, loss, "the BayesianDQN Q-network loss", max_grad_norm=self.max_grad_norm
            )
            if penalty is not None:
                penalties.append(penalty)
            losses.append(total_loss)
            td_losses.append(td_loss.item())

        self._n_updates += gradient_steps
        if self.head == "bbb" and not self.policy.rollout_samples.is_empty():
            # The training environments' held samples keep their noise draws and follow the updated posterior
            # (w = mu + sigma * eps with the same eps), so a long episode does not act on stale weights.
            with self._rollout_thompson():
                refresh_weights(self.q_net)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", np.mean(losses))
        self.logger.record("train/td_loss", np.mean(td_losses))
        if kls:
            self.logger.record("train/kl", np.mean(kls))
        if penalties:
            self.logger.record("train/ewc_penalty", np.mean(penalties))

    def _ensemble_td_loss(self, replay_data: ReplaySamples) -> th.Tensor:
        """
        The ``"ensemble"`` head's loss (Osband et al., 2018, Algorithm 1): every member's Huber TD error on its own
        Double-DQN targets, weighted by its bootstrap mask of each transition, averaged over members and transitions.
        With ``MlpPolicy`` the members share no trained weight, so each one's gradient is that of its own bootstrapped
        loss (up to the factor ``1 / K``, which Adam's scale invariance removes); with ``CnnPolicy`` the shared
        convolutions get the sum, as in Bootstrapped DQN (Osband et al., 2016).

        :param replay_data: The minibatch just sampled from the replay buffer.
        :return: The loss.
        """
        buffer = self.replay_buffer
        assert isinstance(buffer, BootstrapMaskMixin) and self.bootstrap_seed is not None
        n_heads = self.policy.n_heads
        masks = bootstrap_masks(buffer.last_transition_numbers(), n_heads, self.bootstrap_prob, self.bootstrap_seed)
        targets = self._replay_targets(replay_data, per_member=True)  # [K, n, 1]
        actions = replay_data.actions.long().unsqueeze(0).expand(n_heads, -1, -1)  # [K, n, 1]
        current = self.q_net.member_q_values(replay_data.observations).gather(-1, actions)
        errors = F.smooth_l1_loss(current, targets, reduction="none").squeeze(-1)  # [K, n]
        return (th.as_tensor(masks, device=self.device) * errors).mean()

    # ----------------------------------------------------------------------------------------------------------------
    # Continual learning
    # ----------------------------------------------------------------------------------------------------------------
    def _ewc_fisher(self, network: str, parameter_names: list[str], samples: ReplaySamples) -> dict[str, th.Tensor]:
        """
        The EWC Fisher of the Q-network on replayed transitions: the empirical Fisher (mean of squared per-sample
        gradients) of the Huber TD loss with posterior-mean weights and Double-DQN targets, the loss the network is
        trained on (Kirkpatrick et al., 2017, eq. 3, with the TD error as the log-likelihood's residual).

        :param network: ``"q_net"``.
        :param parameter_names: Its parameters to estimate the Fisher of.
        :param samples: Replayed transitions.
        :return: Parameter name -> Fisher diagonal (the mean over the transitions).
        """
        q_net = getattr(self, network)
        targets = self._replay_targets(samples).reshape(-1)

        def per_sample_loss(params: dict[str, th.Tensor], sample: tuple[th.Tensor, ...]) -> th.Tensor:
            observation, action, target = sample
            q_values = functional_call(q_net, params, (observation.unsqueeze(0),))
            return F.smooth_l1_loss(q_values[0].gather(0, action.reshape(1))[0], target)

        data = (samples.observations, samples.actions.long().reshape(-1), targets)
        with q_mode(q_net, "mean"):
            return diagonal_fisher(q_net, per_sample_loss, data, parameter_names=parameter_names)  # type: ignore[arg-type]

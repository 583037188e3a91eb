"""BayesianDQN: DQN with a posterior over the Q-network and Thompson-sampling exploration (BBQN and BDQN heads)."""

import contextlib
import math
from collections.abc import Iterator
from typing import Any, ClassVar, NamedTuple, TypeVar

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.dqn import DQN
from torch.func import functional_call

from sb3_bayes.bayes_dqn.policies import (
    BayesianDQNPolicy,
    BayesianQNetwork,
    CnnPolicy,
    MlpPolicy,
    ThompsonLinearHead,
    check_head,
    q_mode,
)
from sb3_bayes.common.bayesian_layers import kl_divergence, posterior_to_prior, refresh_weights
from sb3_bayes.common.buffers import PlaceholderReplayBufferMixin
from sb3_bayes.common.ewc import ElasticWeightConsolidation, diagonal_fisher

SelfBayesianDQN = TypeVar("SelfBayesianDQN", bound="BayesianDQN")
CONSOLIDATIONS = ("none", "ewc", "vcl")
# Rows of the replay buffer read per forward pass when the whole recent window is processed (posterior refresh, EWC).
CHUNK_ROWS = 1024


class RecentTransitions(NamedTuple):
    """Transitions read from the end of the replay buffer, with their Double-DQN targets."""

    observations: th.Tensor
    actions: th.Tensor  # [n] long
    targets: th.Tensor  # [n]


class BayesianDQN(PlaceholderReplayBufferMixin, DQN):
    """
    Bayesian Deep Q-Network: DQN whose Q-network carries a posterior over its weights and explores by Thompson sampling
    (one set of weights drawn per episode, or every ``resample_every`` steps, and followed greedily), with
    Double-DQN targets computed from the posterior means of the online and target networks.

    Two heads (``head``):

    - ``"bbb"``: BBQN (Lipton et al., 2018, https://arxiv.org/abs/1608.05081): all fully-connected layers are
      Bayes-by-backprop layers (Blundell et al., 2015) trained with the local reparameterisation trick on
      ``Huber TD loss + kl_weight * KL(q || prior) / N`` with ``N`` the transitions in the replay buffer (the KL is that
      of the whole data set, so it is divided by its size, not by the batch).
    - ``"blr"``: BDQN (Azizzadenesheli et al., 2018, https://arxiv.org/abs/1802.04412): a deterministic network gives
      features ``phi(s)``; every action has a closed-form Bayesian linear regression on them (prior variance
      ``blr_prior_var``, noise variance ``blr_noise_var``), refitted every ``posterior_update_freq`` steps on the most
      recent ``posterior_window`` transitions; the features are trained on the TD loss through the posterior mean.

    Continual learning: ``consolidation="ewc"`` (Kirkpatrick et al., 2017; ``ewc_online`` for Schwarz et al., 2018) adds
    ``ewc_lambda * sum F (theta - theta*)^2`` on the parameters of ``ewc_modules`` once :meth:`consolidate` has been
    called at a task switch; ``"vcl"`` (Nguyen et al., 2018, ``"bbb"`` head only) makes the posterior the next prior.

    :param policy: ``"MlpPolicy"`` or ``"CnnPolicy"`` (or a policy class).
    :param env: The environment to learn from (if registered in Gym, can be str).
    :param head: ``"bbb"`` (Bayes-by-backprop Q-network) or ``"blr"`` (Bayesian linear regression on the last layer).
    :param kl_weight: Weight of the per-transition KL term (``"bbb"``).
    :param resample_every: Thompson schedule of the training environments: 0 draws new weights for an environment at
        each of its episode starts; ``k > 0`` redraws all every ``k`` steps (BDQN's ``T_sample``); None picks the
        head's default (``"bbb"``: 0, ``"blr"``: 1000). ``predict`` always redraws where ``episode_start`` is true.
    :param blr_prior_var: Prior variance of the ``"blr"`` weights (BDQN: 0.001).
    :param blr_noise_var: Noise variance of the ``"blr"`` regression (BDQN: 1).
    :param posterior_update_freq: Steps between refits of the ``"blr"`` posterior (BDQN: 1000).
    :param posterior_window: Most recent transitions the ``"blr"`` posterior is fitted on (BDQN: 10k).
    :param consolidation: ``"none"``, ``"ewc"`` or ``"vcl"``: what :meth:`consolidate` does at a task switch.
    :param ewc_lambda: Strength of the EWC penalty.
    :param ewc_online: Online EWC: decay the previous Fisher instead of summing per task.
    :param ewc_decay: Decay of online EWC.
    :param ewc_modules: Modules of the policy whose parameters EWC anchors (``"q_net"`` or its parts, e.g.
        ``"q_net.features_extractor"``, ``"q_net.hidden"``, ``"q_net.head"``).
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
    :param stats_window_size: Window size for the rollout logging.
    :param tensorboard_log: The log location for tensorboard (if None, no logging).
    :param policy_kwargs: Additional arguments passed to the policy (network sizes, ``bayesian_layer_kwargs``, ...).
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages.
    :param seed: Seed for the pseudo random generators.
    :param device: Device on which the code should run.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy, "CnnPolicy": CnnPolicy}
    policy: BayesianDQNPolicy  # type: ignore[assignment]
    q_net: BayesianQNetwork  # type: ignore[assignment]
    q_net_target: BayesianQNetwork  # type: ignore[assignment]

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
        consolidation: str = "none",
        ewc_lambda: float = 1e4,
        ewc_online: bool = False,
        ewc_decay: float = 1.0,
        ewc_modules: tuple[str, ...] | list[str] = ("q_net",),
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
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        env = maybe_make_env(env, verbose) if env is not None else None
        if env is not None:
            self._check_spaces(env.observation_space, env.action_space)
        check_head(head)
        if consolidation not in CONSOLIDATIONS:
            raise ValueError(f"Unknown consolidation '{consolidation}': choose one of {', '.join(CONSOLIDATIONS)}.")
        if consolidation == "vcl" and head != "bbb":
            raise ValueError("consolidation='vcl' needs head='bbb' (the prior of Bayes-by-backprop layers); use 'ewc'.")
        if resample_every is not None and resample_every < 0:
            raise ValueError(f"resample_every must be >= 0 or None, got {resample_every}.")
        if kl_weight < 0 or ewc_lambda < 0:
            raise ValueError(f"kl_weight and ewc_lambda must be >= 0, got {kl_weight} and {ewc_lambda}.")
        if posterior_update_freq < 1 or posterior_window < 1:
            raise ValueError(
                f"posterior_update_freq and posterior_window must be >= 1, got {posterior_update_freq}, {posterior_window}."
            )
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
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        self.head = head
        self.kl_weight = kl_weight
        self.resample_every = resample_every
        self.blr_prior_var = blr_prior_var
        self.blr_noise_var = blr_noise_var
        self.posterior_update_freq = posterior_update_freq
        self.posterior_window = posterior_window
        self.consolidation = consolidation
        self.ewc_lambda = ewc_lambda
        self.ewc_online = ewc_online
        self.ewc_decay = ewc_decay
        self.ewc_modules = tuple(ewc_modules)
        # Step of the last posterior refit ("blr"; None: refit at the first training call) and counters.
        self._last_posterior_update: int | None = None
        self.n_posterior_updates = 0
        self.n_consolidations = 0
        self.ewc: ElasticWeightConsolidation | None = None
        if _init_setup_model:
            self._setup_model()

    @staticmethod
    def _check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(
                f"BayesianDQN supports only Discrete action spaces, got {action_space}: "
                "use BayesianDDPG for continuous actions."
            )
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
        return 0 if self.head == "bbb" else 1000

    def _setup_model(self) -> None:
        self._check_spaces(self.observation_space, self.action_space)
        ewc_modules = tuple(self.ewc_modules)
        for name in ewc_modules:
            if name != "q_net" and not name.startswith("q_net."):
                raise ValueError(f"ewc_modules must name 'q_net' or its submodules (e.g. 'q_net.hidden'), got '{name}'.")
        # The network settings are constructor arguments of the algorithm; the policy builds them.
        for key in ("head", "blr_prior_var", "blr_noise_var"):
            if key in self.policy_kwargs and self.policy_kwargs[key] != getattr(self, key):
                raise ValueError(f"Pass {key} to BayesianDQN itself, not in policy_kwargs ({self.policy_kwargs[key]!r}).")
        self.policy_kwargs = {**self.policy_kwargs, "head": self.head}  # a copy: never mutate the caller's dict
        self.policy_kwargs.update(head=self.head, blr_prior_var=self.blr_prior_var, blr_noise_var=self.blr_noise_var)
        super()._setup_model()  # without an env, a one-row placeholder replay buffer (PlaceholderReplayBufferMixin)
        self.ewc = None
        if self.consolidation == "ewc":
            self.ewc = ElasticWeightConsolidation(
                self.q_net,
                self.ewc_lambda,
                online=self.ewc_online,
                decay=self.ewc_decay,
                parameter_names=self._ewc_parameter_names(),
            ).to(self.device)

    def _ewc_parameter_names(self) -> list[str]:
        """Parameters of ``q_net`` anchored by EWC (posterior means only: a Bayesian layer's log-variances do not enter
        the mean-weight TD loss whose Fisher is estimated)."""
        prefixes = [name[len("q_net.") :] + "." if name != "q_net" else "" for name in self.ewc_modules]
        names = [
            name
            for name, parameter in self.q_net.named_parameters()
            if parameter.requires_grad and not name.endswith("log_var") and any(name.startswith(p) for p in prefixes)
        ]
        if not names:
            raise ValueError(f"ewc_modules {self.ewc_modules} hold no trainable parameters of the Q-network.")
        return names

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
            vectorized = self.policy.is_vectorized_observation(observation)
            n_batch = observation.shape[0] if vectorized else 1  # type: ignore[union-attr]
            self.policy.prepare_thompson(n_batch, episode_start)
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

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: np.ndarray | dict[str, np.ndarray],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
        if self.thompson_interval == 0 and bool(np.any(dones)):
            # Thompson sampling per episode (BBQN): the environments that start a new episode draw new weights.
            with self._rollout_thompson():
                self.policy.resample(indices=np.flatnonzero(dones))

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
    def _td_targets(self, rewards: th.Tensor, next_observations: th.Tensor, dones: th.Tensor, discounts: Any) -> th.Tensor:
        """
        Double-DQN targets (van Hasselt et al., 2016) with posterior means: the online network's mean weights pick the
        next action, the target network's mean weights evaluate it.

        :return: ``[n, 1]`` targets.
        """
        with th.no_grad(), q_mode(self.q_net, "mean"), q_mode(self.q_net_target, "mean"):
            next_actions = self.q_net(next_observations).argmax(dim=1, keepdim=True)
            next_q = self.q_net_target(next_observations).gather(1, next_actions)
            return rewards + (1 - dones) * discounts * next_q

    def _recent_transitions(self, n_transitions: int) -> Iterator[RecentTransitions]:
        """
        The most recent ``n_transitions`` vectorised steps of the replay buffer, one transition each (from a random
        environment when ``n_envs > 1``: SB3's buffers draw the environment; exactly the most recent transitions with
        one environment), in chunks, with their Double-DQN targets.
        """
        buffer = self.replay_buffer
        assert buffer is not None
        n_rows = min(buffer.buffer_size if buffer.full else buffer.pos, n_transitions)
        rows = (buffer.pos - 1 - np.arange(n_rows)) % buffer.buffer_size
        for start in range(0, n_rows, CHUNK_ROWS):
            data = buffer._get_samples(rows[start : start + CHUNK_ROWS], env=self._vec_normalize_env)
            discounts = data.discounts if data.discounts is not None else self.gamma
            targets = self._td_targets(data.rewards, data.next_observations, data.dones, discounts)
            yield RecentTransitions(data.observations, data.actions.long().reshape(-1), targets.reshape(-1))

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
        ewc_active = self.ewc is not None and self.n_consolidations > 0
        losses, td_losses, kls, penalties = [], [], [], []
        for _ in range(gradient_steps):
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma
            target_q_values = self._td_targets(
                replay_data.rewards, replay_data.next_observations, replay_data.dones, discounts
            )
            # Local reparameterisation: fresh weight noise per transition ("bbb"); the posterior mean ("blr").
            with q_mode(self.q_net, "sample"):
                current_q_values = self.q_net(replay_data.observations).gather(1, replay_data.actions.long())
            td_loss = F.smooth_l1_loss(current_q_values, target_q_values)
            loss = td_loss
            if self.head == "bbb":
                kl = kl_divergence(self.q_net)
                loss = loss + self.kl_weight * kl / n_transitions
                kls.append(float(kl.detach()))
            if ewc_active:
                assert self.ewc is not None
                penalty = self.ewc.penalty(self.q_net)
                loss = loss + penalty
                penalties.append(penalty.item())
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise ValueError(
                    f"The BayesianDQN loss is {loss_value} (TD {td_loss.item()}) after {self._n_updates} updates: "
                    "lower learning_rate, kl_weight or ewc_lambda."
                )
            losses.append(loss_value)
            td_losses.append(td_loss.item())
            self.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()

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

    # ----------------------------------------------------------------------------------------------------------------
    # Continual learning
    # ----------------------------------------------------------------------------------------------------------------
    def consolidate(self, n_samples: int = 10_000) -> None:
        """
        Protect what was learned on the task that just ended (call at each task switch, before ``set_env``).

        - ``"ewc"``: estimate the diagonal Fisher of the TD loss (with posterior-mean weights and Double-DQN targets)
          from per-sample gradients on the most recent ``n_samples`` transitions of the replay buffer, anchor the
          current parameters and add the Fisher to the running total (Kirkpatrick et al., 2017, eq. 3).
        - ``"vcl"``: the current posterior of every Bayes-by-backprop layer becomes its prior (Nguyen et al., 2018,
          eq. 4), so the KL term pulls towards what was learned instead of towards the initial prior.
        - ``"none"``: nothing.

        :param n_samples: Transitions used for the Fisher estimate.
        """
        if self.consolidation == "none":
            return
        if self.consolidation == "vcl":
            posterior_to_prior(self.q_net)
        else:
            assert self.ewc is not None
            if self.replay_buffer is None or self.replay_buffer.size() == 0:
                raise ValueError("consolidate needs transitions in the replay buffer: call it after learning a task.")
            batches = list(self._recent_transitions(n_samples))
            data = tuple(th.cat([getattr(b, field) for b in batches]) for field in RecentTransitions._fields)
            q_net = self.q_net

            def per_sample_loss(params: dict[str, th.Tensor], sample: tuple[th.Tensor, ...]) -> th.Tensor:
                observation, action, target = sample
                q_values = functional_call(q_net, params, (observation.unsqueeze(0),))
                return F.smooth_l1_loss(q_values[0].gather(0, action.reshape(1))[0], target)

            with q_mode(q_net, "mean"):
                fisher = diagonal_fisher(q_net, per_sample_loss, data, parameter_names=self._ewc_parameter_names())
            self.ewc.consolidate(q_net, fisher)
        self.n_consolidations += 1
        self.logger.record("train/n_consolidations", self.n_consolidations)

    # ----------------------------------------------------------------------------------------------------------------
    # Saving
    # ----------------------------------------------------------------------------------------------------------------
    def learn(
        self: SelfBayesianDQN,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "BayesianDQN",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfBayesianDQN:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "ewc"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        # The policy's state dict holds both Q-networks (every variational parameter, prior and held sample), the BDQN
        # posterior (mean and Cholesky factor of the precision per action) and the training environments' samples.
        state_dicts = ["policy", "policy.optimizer"]
        if self.consolidation == "ewc":
            state_dicts.append("ewc")  # Fisher, anchors and the consolidation count
        return state_dicts, []

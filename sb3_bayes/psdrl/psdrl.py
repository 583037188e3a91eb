"""PSDRL: posterior sampling for deep reinforcement learning (Sasso, Conserva and Rauber, ICML 2023)."""

from collections.abc import Iterator
from typing import Any, ClassVar, NamedTuple, TypeVar

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm, maybe_make_env
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule

from sb3_bayes.common.blr import FixedFeatureGram
from sb3_bayes.common.episode_buffer import Episode, EpisodeReplayBuffer
from sb3_bayes.common.rollout import dump_rollout_logs, final_observations
from sb3_bayes.common.utils import check_finite
from sb3_bayes.psdrl.policies import CnnPolicy, MlpPolicy, PSDRLPolicy

SelfPSDRL = TypeVar("SelfPSDRL", bound="PSDRL")
RESAMPLE_SCHEDULES = ("round", "episode")
REWARD_TRANSFORMS = ("tanh", "none")
STATE_WEIGHTINGS = ("visits", "distinct")


class StartStates(NamedTuple):
    """The start states of the replay's transitions, on which the value network is fitted."""

    states: th.Tensor  # [n, latent + gru]: [z_t, h_t] before the transition (h follows the data)
    projections: th.Tensor | None  # [n, K]: the random-feature prior's projection of o_t (None without a prior)
    observation_keys: th.Tensor  # [n] int64: a content key of o_t (equal observations, equal keys)

    def select(self, index: th.Tensor) -> "StartStates":
        """The start states at ``index``."""
        projections = None if self.projections is None else self.projections[index]
        return StartStates(self.states[index], projections, self.observation_keys[index])

    @staticmethod
    def concatenate(parts: list["StartStates"]) -> "StartStates":
        """The start states of ``parts``, one after the other."""
        projections = [part.projections for part in parts if part.projections is not None]
        return StartStates(
            th.cat([part.states for part in parts]),
            th.cat(projections) if projections else None,
            th.cat([part.observation_keys for part in parts]),
        )


class ReplayChunk(NamedTuple):
    """The recurrent pass over some of the replay's transitions (``m`` of them, in the order of their episodes)."""

    next_hidden: th.Tensor  # [m, gru]: h_{t+1} = GRU([z_t, a_t], h_t)
    next_latent: th.Tensor  # [m, latent]: z_{t+1}, the encoded next observation
    action_one_hot: th.Tensor  # [m, n_actions]
    reward: th.Tensor  # [m]: the stored reward
    start_states: StartStates  # [z_t, h_t], the prior's projection of o_t and its content key


def distinct(ids: th.Tensor, weights: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """
    Distinct values of a flat id tensor.

    :param ids: ``[n]`` integer ids.
    :param weights: ``[n]`` weight of every entry.
    :return: ``(first [u], inverse [n], summed weights [u])``: the position of one entry per distinct id,
        ``ids == ids[first][inverse]``, and the weights summed per distinct id.
    """
    unique, inverse = th.unique(ids, return_inverse=True)
    positions = th.arange(ids.numel(), device=ids.device)
    first = th.full_like(unique, ids.numel()).scatter_reduce(0, inverse, positions, reduce="amin")
    summed = th.zeros(len(unique), dtype=weights.dtype, device=weights.device).index_add(0, inverse, weights)
    return first, inverse, summed


class PSDRL(BaseAlgorithm):
    """
    Posterior Sampling for Deep Reinforcement Learning (PSDRL).

    An autoencoder maps observations to latent states; a recurrent transition model predicts the next latent state and
    the reward, and its last layer carries a closed-form Bayesian linear-regression posterior. After each training
    round one model is sampled from that posterior, a value network is fitted on the sampled model's one-step
    predictions, and the agent acts greedily with respect to the sample (one-step look-ahead with the value network).
    Exploration comes from the randomness of the sampled model, as in posterior sampling for RL (PSRL).

    Paper: https://arxiv.org/abs/2305.00477

    :param policy: ``"CnnPolicy"`` (64x64 frames, the paper's networks) or ``"MlpPolicy"`` (vector observations).
    :param env: The environment to learn from (if registered in Gym, can be str).
    :param learning_rate: Adam learning rate of every component (1e-4).
    :param buffer_size: Transitions kept in the episode replay (100k).
    :param batch_size: Sequences per training batch (125).
    :param sequence_length: Steps per training sequence (250).
    :param tbptt_window: Steps between truncations of back-propagation through time in the transition model (5).
    :param autoencoder_iterations: Autoencoder updates per round, each on ``batch_size`` sequences (3).
    :param model_iterations: Transition and terminal model updates per round, each on ``batch_size`` sequences (3).
    :param value_iterations: Passes of value fitting over the replay's start states per round (3).
    :param value_batch_size: Start states per value-fitting minibatch.
    :param value_max_states: Start states per value fit: a subset of this many of the replay's start states, drawn
        afresh at every fit (see ``state_weighting``), which bounds the cost of a round as the replay grows. None
        (the original): all of them.
    :param state_weighting: How the autoencoder and the value fit weigh the replay's states. ``"visits"`` (the
        original): every stored transition alike, so a state weighs as often as it was visited. ``"distinct"``: every
        distinct observation alike. The autoencoder then trains on ``batch_size * sequence_length`` distinct
        observations drawn uniformly (all of them in a small task); in the value fit a start state weighs ``1 / count``
        of its observation in the replay (the subset of ``value_max_states`` is drawn with these weights without
        replacement; without a subset the loss is weighted by them). Value iteration backs up every state, however
        rarely visited; weighing by visits starves the rarely visited states at the frontier of exploration, through
        which the sampled model's optimism (or a newly found reward) must travel back to the start, and the
        autoencoder maps them almost onto each other.
    :param target_update_interval: Value updates between hard copies to the target network (4).
    :param warmup_steps: Steps during which rounds run every ``warmup_freq`` steps (100k).
    :param warmup_freq: Round interval during the warm-up (250).
    :param update_freq: Round interval afterwards (1000).
    :param resample_schedule: ``"round"`` (the original: a new model after every training round, also mid-episode) or
        ``"episode"`` (PSRL: the networks and the sample stay fixed during an episode; a due training round waits for
        the episode end, and every episode end draws a new model and fits the value network to it). With
        ``n_envs > 1`` all environments share one sample, redrawn whenever one of their episodes ends.
    :param reward_transform: ``"tanh"`` (the original's reward squashing, applied when storing) or ``"none"``.
    :param lookahead_cache_bytes: Memory allowed for caching the sampled model's one-step predictions during value
        fitting (they do not change while the value network is fitted); above it they are recomputed per batch.
    :param stats_window_size: Window size for the rollout logging.
    :param tensorboard_log: The log location for tensorboard (if None, no logging).
    :param policy_kwargs: Additional arguments passed to the policy (network sizes, prior scales, ``sampling``, ...).
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages.
    :param seed: Seed for the pseudo random generators.
    :param device: Device on which the code should run.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy, "CnnPolicy": CnnPolicy}
    policy: PSDRLPolicy

    def __init__(
        self,
        policy: str | type[PSDRLPolicy],
        env: GymEnv | str | None,
        learning_rate: float | Schedule = 1e-4,
        buffer_size: int = 100_000,
        batch_size: int = 125,
        sequence_length: int = 250,
        tbptt_window: int = 5,
        autoencoder_iterations: int = 3,
        model_iterations: int = 3,
        value_iterations: int = 3,
        value_batch_size: int = 1024,
        value_max_states: int | None = None,
        state_weighting: str = "visits",
        target_update_interval: int = 4,
        warmup_steps: int = 100_000,
        warmup_freq: int = 250,
        update_freq: int = 1000,
        resample_schedule: str = "round",
        reward_transform: str = "tanh",
        lookahead_cache_bytes: int = 2**31,
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
        super().__init__(
            policy,
            env,
            learning_rate,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            support_multi_env=True,
            seed=seed,
            supported_action_spaces=None,  # checked with a ValueError that names the space
        )
        if resample_schedule not in RESAMPLE_SCHEDULES:
            raise ValueError(
                f"Unknown resample_schedule '{resample_schedule}': choose one of {', '.join(RESAMPLE_SCHEDULES)}."
            )
        if reward_transform not in REWARD_TRANSFORMS:
            raise ValueError(f"Unknown reward_transform '{reward_transform}': choose one of {', '.join(REWARD_TRANSFORMS)}.")
        self.buffer_size = buffer_size
        self.batch_size = batch_size
        self.sequence_length = sequence_length
        self.tbptt_window = tbptt_window
        self.autoencoder_iterations = autoencoder_iterations
        self.model_iterations = model_iterations
        self.value_iterations = value_iterations
        self.value_batch_size = value_batch_size
        if value_max_states is not None and value_max_states < 1:
            raise ValueError(f"value_max_states must be >= 1 or None, got {value_max_states}.")
        self.value_max_states = value_max_states
        if state_weighting not in STATE_WEIGHTINGS:
            raise ValueError(f"Unknown state_weighting '{state_weighting}': choose one of {', '.join(STATE_WEIGHTINGS)}.")
        self.state_weighting = state_weighting
        self.target_update_interval = target_update_interval
        self.warmup_steps = warmup_steps
        self.warmup_freq = warmup_freq
        self.update_freq = update_freq
        self.resample_schedule = resample_schedule
        self.reward_transform = reward_transform
        self.lookahead_cache_bytes = lookahead_cache_bytes
        self.n_training_rounds = 0
        self.n_value_updates = 0
        self.replay_buffer: EpisodeReplayBuffer | None = None
        self._start_states: StartStates | None = None
        # The random-feature prior's block of the posterior's Gram matrix over the replay's complete episodes, and the
        # prior it was computed with (derived from the replay, which is not saved: rebuilt when needed).
        self._prior_gram: FixedFeatureGram[Episode] | None = None
        self._prior_gram_kernel: tuple[th.Tensor, ...] | None = None
        # Recurrent state of the environments inside `learn` (saved, so that training resumes exactly).
        self._last_hidden = th.zeros(0)
        if _init_setup_model:
            self._setup_model()

    @staticmethod
    def _check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(
                f"PSDRL supports only Discrete action spaces, got {action_space}: use PETS for continuous actions."
            )
        if not isinstance(observation_space, spaces.Box):
            raise ValueError(
                f"PSDRL supports only Box observation spaces (images or vectors), got {observation_space}: "
                "flatten it (gymnasium's FlattenObservation)."
            )

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self._check_spaces(self.observation_space, self.action_space)
        if not isinstance(getattr(self, "_rng", None), np.random.Generator):  # a loaded model keeps its generator state
            self._rng = np.random.default_rng(self.seed)
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space, self.action_space, self.lr_schedule, **self.policy_kwargs  # type: ignore[arg-type]
        )
        self.policy = self.policy.to(self.device)

    def _ensure_replay_buffer(self) -> EpisodeReplayBuffer:
        if self.replay_buffer is None or self.replay_buffer.n_envs != self.n_envs:
            assert isinstance(self.observation_space, spaces.Box)
            self.replay_buffer = EpisodeReplayBuffer(
                self.observation_space.shape, self.observation_space.dtype, self.buffer_size, self.n_envs
            )
        return self.replay_buffer

    # ----------------------------------------------------------------------------------------------------------------
    # Training round
    # ----------------------------------------------------------------------------------------------------------------
    def _sample(self) -> dict[str, th.Tensor]:
        assert self.replay_buffer is not None
        batch = self.replay_buffer.sample(self.batch_size, self.sequence_length, self._rng)
        return {name: th.as_tensor(value, device=self.device) for name, value in batch._asdict().items()}

    def _autoencoder_batch(self) -> tuple[th.Tensor, th.Tensor]:
        """Preprocessed frames of one autoencoder update and their loss weights (see ``state_weighting``)."""
        assert self.replay_buffer is not None
        policy = self.policy
        if self.state_weighting == "distinct":
            frames = self.replay_buffer.sample_distinct_observations(self.batch_size * self.sequence_length, self._rng)
            inputs = policy.preprocess(th.as_tensor(frames, device=self.device))
            return inputs, th.ones(len(inputs), device=self.device)
        batch = self._sample()
        first, _, weight = distinct(batch["frame_ids"][:, :-1].flatten(), batch["mask"].flatten())
        drawn = weight > 0  # padding has weight 0
        return policy.preprocess(batch["observations"][:, :-1].flatten(0, 1)[first[drawn]]), weight[drawn]

    def _train_autoencoder(self) -> float:
        """
        Pixel (or vector) reconstruction error, trained on its own (section 3.1). Windows drawn from the replay overlap
        (125 x 250 frames from a replay that may hold fewer), so every distinct frame is encoded once and weighted by
        how often it was drawn: the loss and its gradient are those of the full batch.
        """
        policy, losses = self.policy, []
        for _ in range(self.autoencoder_iterations):
            inputs, weight = self._autoencoder_batch()
            reconstruction = policy.autoencoder.decode(policy.autoencoder.encode(inputs))  # type: ignore[operator]
            per_frame = F.mse_loss(reconstruction, inputs, reduction="none").flatten(1).mean(dim=1)
            loss = (per_frame * weight).sum() / weight.sum()
            policy.autoencoder_optimizer.zero_grad()
            loss.backward()
            policy.autoencoder_optimizer.step()
            losses.append(loss.detach())
        mean_loss = th.stack(losses).mean()
        check_finite(mean_loss, "The PSDRL autoencoder loss", "lower learning_rate")
        return float(mean_loss)

    def _train_transition_and_terminal(self) -> tuple[float, float]:
        """
        Transition model: MSE to ``[z', r]`` with truncated back-propagation through time over ``tbptt_window``-step
        windows; terminal model: MSE of its prediction (on the true next latent, or on the latent and action before
        the move: ``terminal_input``) to the termination flag.

        Only the GRU is recurrent, so within a window it runs step by step and the head then runs once over all the
        window's steps. Latents are computed once per distinct frame, the recurrent model once per distinct window and
        the terminal loss once per distinct next frame (its target is a property of the frame), each weighted by its
        count: the same losses and gradients as the full batch.
        """
        policy, transition_losses, terminal_losses = self.policy, [], []
        for _ in range(self.model_iterations):
            batch = self._sample()
            frame_ids, mask = batch["frame_ids"], batch["mask"]
            n, length = batch["actions"].shape
            first, inverse, _ = distinct(frame_ids.flatten(), th.ones_like(frame_ids.flatten(), dtype=th.float32))
            with th.no_grad():
                latents = policy.encode(batch["observations"].flatten(0, 1)[first])[inverse].view(n, length + 1, -1)
            # Windows with the same first frame and length are the same steps: run each once, weighted by its count.
            n_steps = mask.sum(dim=1).long()
            rows, _, row_weight = distinct(frame_ids[:, 0] * (length + 1) + n_steps, th.ones(n, device=self.device))
            weight = mask[rows] * row_weight[:, None]
            hidden = policy.initial_hidden(len(rows))
            actions = policy.one_hot(batch["actions"][rows])
            row_latents = latents[rows]
            targets = th.cat([row_latents[:, 1:], batch["rewards"][rows][..., None]], dim=-1)
            transition_loss = th.zeros((), device=self.device)
            for start in range(0, length, self.tbptt_window):
                end = min(start + self.tbptt_window, length)
                hidden = hidden.detach()
                hiddens = []
                for t in range(start, end):
                    hidden = policy.transition.recur(row_latents[:, t], actions[:, t], hidden)
                    hiddens.append(hidden)
                features = policy.transition.features(
                    th.stack(hiddens, dim=1), row_latents[:, start:end], actions[:, start:end]
                )
                prediction = policy.transition.output_layer(features)
                squared_error = (prediction - targets[:, start:end]).pow(2).mean(dim=-1)
                window_loss = (squared_error * weight[:, start:end]).sum() / mask.sum()
                policy.model_optimizer.zero_grad()
                window_loss.backward()
                policy.model_optimizer.step()
                transition_loss = transition_loss + window_loss.detach()
            # A next frame names its transition (the step before it in the same episode).
            first_next, _, next_weight = distinct(frame_ids[:, 1:].flatten(), mask.flatten())
            drawn = first_next[next_weight > 0]
            terminal_prediction = policy.terminal_prediction(
                latents[:, :-1].flatten(0, 1)[drawn],
                policy.one_hot(batch["actions"]).flatten(0, 1)[drawn],
                latents[:, 1:].flatten(0, 1)[drawn],
            )
            terminal_error = (terminal_prediction - batch["terminations"].flatten()[drawn]).pow(2)
            terminal_loss = (terminal_error * next_weight[next_weight > 0]).sum() / mask.sum()
            policy.model_optimizer.zero_grad()
            terminal_loss.backward()
            policy.model_optimizer.step()
            transition_losses.append(transition_loss)
            terminal_losses.append(terminal_loss.detach())
        transition_mean, terminal_mean = th.stack(transition_losses).mean(), th.stack(terminal_losses).mean()
        check_finite(transition_mean, "The PSDRL transition model loss", "lower learning_rate")
        check_finite(terminal_mean, "The PSDRL terminal model loss", "lower learning_rate")
        return float(transition_mean), float(terminal_mean)

    def _replay_chunks(self, chunk_transitions: int = 8192) -> Iterator[ReplayChunk]:
        """
        Run the encoder and the recurrent part of the transition model over every stored episode from its start
        (``h`` follows the data), in chunks of episodes.

        :param chunk_transitions: Episodes are processed together up to about this many (padded) steps; the GRU runs
            step by step over a chunk.
        """
        assert self.replay_buffer is not None
        policy = self.policy
        episodes = sorted(self.replay_buffer.all_episodes(), key=len)  # similar lengths together: little padding
        first = 0
        while first < len(episodes):
            last = first + 1
            while last < len(episodes) and (last + 1 - first) * len(episodes[last]) <= chunk_transitions:
                last += 1
            chunk, first = episodes[first:last], last
            length = max(len(e) for e in chunk)
            obs = np.zeros((len(chunk), length + 1, *self.replay_buffer.obs_shape), dtype=self.replay_buffer.obs_dtype)
            actions = np.zeros((len(chunk), length), dtype=np.int64)
            rewards = np.zeros((len(chunk), length), dtype=np.float32)
            mask = np.zeros((len(chunk), length), dtype=bool)
            keys = np.zeros((len(chunk), length), dtype=np.int64)
            for row, episode in enumerate(chunk):
                obs[row, : len(episode) + 1] = episode.observations
                actions[row, : len(episode)] = episode.actions
                rewards[row, : len(episode)] = episode.rewards
                mask[row, : len(episode)] = True
                keys[row, : len(episode)] = episode.observation_keys()[:-1]
            valid = th.as_tensor(mask, device=self.device)
            obs_t = th.as_tensor(obs, device=self.device)
            # Padding frames are not encoded.
            frame_valid = th.cat([valid[:, :1], valid], dim=1)
            latents = th.zeros(len(chunk), length + 1, policy.transition.latent_dim, device=self.device)
            processed = policy.preprocess(obs_t[frame_valid])
            latents[frame_valid] = policy.autoencoder.encode(processed)  # type: ignore[operator]
            projection = policy.prior_projection(processed)
            start_projection = None
            if projection is not None:
                # The frames o_0 ... o_{T-1} that start a transition, in the order of `valid`.
                projections = projection.new_zeros(len(chunk), length + 1, projection.shape[-1])
                projections[frame_valid] = projection
                start_projection = projections[:, :-1][valid]
            one_hot = policy.one_hot(th.as_tensor(actions, device=self.device))
            hidden = policy.initial_hidden(len(chunk))
            hiddens = [hidden]
            for t in range(length):
                hidden = policy.transition.recur(latents[:, t], one_hot[:, t], hidden)
                hiddens.append(hidden)
            stacked = th.stack(hiddens, dim=1)  # h_0 ... h_T
            starts = th.cat([latents[:, :-1], stacked[:, :-1]], dim=-1)[valid]
            yield ReplayChunk(
                stacked[:, 1:][valid],
                latents[:, 1:][valid],
                one_hot[valid],
                th.as_tensor(rewards, device=self.device)[valid],
                StartStates(starts, start_projection, th.as_tensor(keys, device=self.device)[valid]),
            )

    def _replay_features(self, chunk_transitions: int = 8192) -> Iterator[tuple[th.Tensor, th.Tensor, StartStates]]:
        """
        The Bayesian last layer's regression data over every stored transition (:meth:`_replay_chunks`).

        :param chunk_transitions: See :meth:`_replay_chunks`.
        :return: Chunks of ``(Bayesian features [m, d], targets [m, latent + 1], start states)``, with the start
            state ``[z_t, h_t]`` before each transition, the prior's projection of ``o_t`` and its content key.
        """
        policy = self.policy
        for chunk in self._replay_chunks(chunk_transitions):
            latents = chunk.start_states.states[:, : policy.transition.latent_dim]
            features = policy.transition.features(chunk.next_hidden, latents, chunk.action_one_hot)
            features = policy.bayesian_features(features, chunk.start_states.projections, chunk.action_one_hot)
            targets = th.cat([chunk.next_latent, chunk.reward[:, None]], dim=-1)
            yield features, targets, chunk.start_states

    def _episode_prior_features(self, episode: Episode) -> th.Tensor:
        """The random-feature prior's columns ``c psi([o_t, a_t])`` of an episode's transitions ``[T, K]``."""
        policy = self.policy
        processed = policy.preprocess(th.as_tensor(episode.observations[:-1], device=self.device))
        projection = policy.prior_projection(processed)
        assert projection is not None
        return policy.prior_part(projection, policy.one_hot(th.as_tensor(episode.actions, device=self.device)))

    def _fixed_prior_gram(self) -> th.Tensor | None:
        """
        ``Psi^T Psi`` of the random-feature prior's columns over every stored transition (None without a prior).

        These columns depend on the observation and action only, so their block of the Gram matrix changes only by the
        episodes that entered or left the replay: complete episodes are summed once (:class:`FixedFeatureGram`),
        running ones at every call. At ``K = 2048`` and 20k transitions this is 170 of the round's 180 GFLOP.
        """
        policy, buffer = self.policy, self.replay_buffer
        if policy.prior_kernel is None:
            return None
        assert buffer is not None
        kernel = (policy.prior_kernel.projection, policy.prior_kernel.phase, th.tensor(policy.prior_feature_scale))
        stale = self._prior_gram_kernel is None or not all(th.equal(a, b) for a, b in zip(kernel, self._prior_gram_kernel))
        if self._prior_gram is None or stale:
            self._prior_gram = FixedFeatureGram(policy.prior_features, self._episode_prior_features)
            self._prior_gram_kernel = tuple(part.clone() for part in kernel)
        gram = self._prior_gram.update(buffer.episodes).to(self.device)
        running = list(buffer.all_episodes())[len(buffer.episodes) :]
        return gram + self._prior_gram.contribution(running).to(self.device) if running else gram

    def _fit_posterior(self, refit: bool = True) -> StartStates:
        """
        Recompute the Bayesian linear regression of the last layer on the whole buffer (the features changed with
        the network), and return the start states of every transition for value fitting.

        :param refit: False only collects the start states (e.g. after loading) and leaves the posterior as it is.
        """
        starts: list[StartStates] = []

        def chunks() -> Iterator[tuple[th.Tensor, th.Tensor]]:
            for features, targets, start_states in self._replay_features():
                starts.append(start_states)
                yield features, targets

        with th.no_grad():
            if refit:
                self.policy.posterior.fit(chunks(), fixed_gram=self._fixed_prior_gram())
            else:  # the start states only: no head, no Bayesian features
                starts = [chunk.start_states for chunk in self._replay_chunks()]
        return StartStates.concatenate(starts)

    def _value_fit_states(self, start: StartStates) -> tuple[StartStates, th.Tensor | None]:
        """
        The start states of one value fit (``value_max_states``, ``state_weighting``) and their loss weights
        (None: equal weights).
        """
        n_states, max_states = start.states.shape[0], self.value_max_states
        weights = None
        if self.state_weighting == "distinct":
            _, inverse, counts = th.unique(start.observation_keys, return_inverse=True, return_counts=True)
            weights = 1.0 / counts[inverse].double()  # every distinct observation weighs 1 in all
        if max_states is None or n_states <= max_states:
            return start, None if weights is None else (weights / weights.mean()).float()
        if weights is None:
            subset = self._rng.choice(n_states, max_states, replace=False)
        else:
            # Weighted sampling without replacement (Efraimidis and Spirakis, 2006): the largest u^(1 / w).
            keys = np.log(self._rng.random(n_states)) / weights.cpu().numpy()
            subset = np.argpartition(-keys, max_states - 1)[:max_states]
        return start.select(th.as_tensor(subset, device=self.device)), None

    def _fit_value(self, start: StartStates) -> float:
        """
        Fit the value network to the sampled model (section 3.3): for start states from the replay,
        ``V(z, h) <- max_a r(a) + gamma V_target(z'(a), h'(a)) [not terminal(a)]`` with the sampled last layer.

        The sampled model is fixed while the value network is fitted, so its one-step predictions are computed once
        and reused by every pass (when they fit in ``lookahead_cache_bytes``).

        :param start: The replay's start states (from :meth:`_fit_posterior`).
        """
        policy = self.policy
        fit_states, weights = self._value_fit_states(start)
        start_states, start_projections = fit_states.states, fit_states.projections
        latent_dim = policy.transition.latent_dim
        n_states, n_actions = start_states.shape[0], policy.transition.n_actions
        batch_size = min(self.value_batch_size, n_states)
        cache_bytes = n_states * n_actions * (start_states.shape[1] + 2) * 4

        def lookahead(index: th.Tensor) -> tuple[th.Tensor, ...]:
            states = start_states[index]
            projection = None if start_projections is None else start_projections[index]
            with th.no_grad():
                return policy.lookahead(states[:, :latent_dim], states[:, latent_dim:], projection)

        cached: tuple[th.Tensor, ...] | None = None
        if cache_bytes <= self.lookahead_cache_bytes:
            chunks = [
                lookahead(th.arange(s, min(s + batch_size, n_states), device=self.device))
                for s in range(0, n_states, batch_size)
            ]
            cached = tuple(th.cat(parts) for parts in zip(*chunks))
        losses = []
        for _ in range(self.value_iterations):
            order = th.randperm(n_states, device=self.device)
            for first in range(0, n_states, batch_size):
                index = order[first : first + batch_size]
                if cached is not None:
                    next_latent, next_hidden, reward, not_terminal = (part[index] for part in cached)
                else:
                    next_latent, next_hidden, reward, not_terminal = lookahead(index)
                with th.no_grad():
                    target = (
                        policy.action_values(next_latent, next_hidden, reward, not_terminal, target=True).max(dim=1).values
                    )
                prediction = policy.value(start_states[index]).squeeze(-1)
                if weights is None:
                    loss = F.mse_loss(prediction, target)
                else:
                    loss = (weights[index] * (prediction - target).pow(2)).sum() / weights[index].sum()
                policy.value_optimizer.zero_grad()
                loss.backward()
                policy.value_optimizer.step()
                losses.append(loss.detach())
                self.n_value_updates += 1
                if self.n_value_updates % self.target_update_interval == 0:
                    policy.value_target.load_state_dict(policy.value.state_dict())
        mean_loss = th.stack(losses).mean()
        check_finite(mean_loss, "The PSDRL value loss", "lower learning_rate or the prior scales")
        return float(mean_loss)

    def train(self) -> None:
        """One training round: autoencoder, transition and terminal models, posterior, sample, value network."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizers)
        autoencoder_loss = self._train_autoencoder()
        transition_loss, terminal_loss = self._train_transition_and_terminal()
        self._start_states = self._fit_posterior()
        self.n_training_rounds += 1
        self.logger.record("train/autoencoder_loss", autoencoder_loss)
        self.logger.record("train/transition_loss", transition_loss)
        self.logger.record("train/terminal_loss", terminal_loss)
        self.logger.record("train/n_rounds", self.n_training_rounds)
        if self.resample_schedule == "round":
            self._resample_and_fit_value()
        # "episode": `learn` draws the sample (and fits the value network on it) at the episode end, after this round.
        self.policy.set_training_mode(False)

    def _resample_and_fit_value(self) -> None:
        if self._start_states is None:  # e.g. after loading: recompute from the replay
            self._start_states = self._fit_posterior(refit=False)
        self.policy.resample()
        value_loss = self._fit_value(self._start_states)
        self.logger.record("train/value_loss", value_loss)

    # ----------------------------------------------------------------------------------------------------------------
    # Interaction
    # ----------------------------------------------------------------------------------------------------------------
    def _round_interval(self) -> int:
        return self.warmup_freq if self.num_timesteps < self.warmup_steps else self.update_freq

    def learn(
        self: SelfPSDRL,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "PSDRL",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfPSDRL:
        """
        Act with the current model sample from the first step, and run a training round every ``warmup_freq`` steps
        (``update_freq`` after ``warmup_steps``) once an episode has finished.

        :param total_timesteps: The total number of environment steps to train on.
        :param callback: Callback(s) called at every step with state of the algorithm.
        :param log_interval: Write the logs every ``log_interval`` training rounds.
        :param tb_log_name: The name of the run for TensorBoard logging.
        :param reset_num_timesteps: Whether or not to reset the current timestep number (used in logging).
        :param progress_bar: Display a progress bar using tqdm and rich.
        :return: The trained model.
        """
        total_timesteps, callback = self._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        callback.on_training_start(locals(), globals())
        assert self.env is not None and self._last_obs is not None
        buffer = self._ensure_replay_buffer()
        if len(self._last_hidden) != self.n_envs or reset_num_timesteps:
            self._last_hidden = self.policy.initial_hidden(self.n_envs)
        steps_since_round = 0
        continue_training = True
        while continue_training and self.num_timesteps < total_timesteps:
            obs = np.asarray(self._last_obs)
            self.policy.set_training_mode(False)
            actions_t, self._last_hidden = self.policy.act(
                th.as_tensor(obs, device=self.device), self._last_hidden.to(self.device)
            )
            actions = actions_t.cpu().numpy()
            new_obs, rewards, dones, infos = self.env.step(actions)
            self.num_timesteps += self.n_envs
            steps_since_round += self.n_envs
            callback.update_locals(locals())
            continue_training = callback.on_step()
            self._update_info_buffer(infos, dones)
            next_obs, terminations = final_observations(new_obs, dones, infos)
            stored_rewards = np.tanh(rewards) if self.reward_transform == "tanh" else rewards
            buffer.add(obs, actions, stored_rewards, next_obs, dones, terminations)
            self._last_obs = new_obs  # type: ignore[assignment]
            if dones.any():
                self._episode_num += int(dones.sum())
                done_mask = th.as_tensor(dones, device=self.device)[:, None]
                self._last_hidden = th.where(done_mask, th.zeros_like(self._last_hidden), self._last_hidden)
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            round_due = buffer.n_complete_episodes() > 0 and steps_since_round >= self._round_interval()
            # "round" (the original): train and resample whenever a round is due, also mid-episode. "episode" (PSRL):
            # the agent commits to one model per episode, so a due round waits for the next episode end, and every
            # episode end draws a new sample (on the networks just trained) and fits the value network to it.
            episode_end = self.resample_schedule == "episode" and bool(dones.any())
            if continue_training and round_due and (self.resample_schedule == "round" or episode_end):
                self.train()
                steps_since_round = 0
                if log_interval > 0 and self.n_training_rounds % log_interval == 0:
                    dump_rollout_logs(self)
            if continue_training and episode_end and self.n_training_rounds > 0:
                self._resample_and_fit_value()
        callback.on_training_end()
        return self

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """
        Act with the current model sample; pass the returned ``state`` back in (it is the recurrent state) and
        ``episode_start`` so that it is reset at new episodes, as with SB3's recurrent policies.
        """
        return self.policy.predict(observation, state, episode_start, deterministic)

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        # The policy's state dict holds every network, the posterior (mean, Cholesky factor of the precision, prior
        # scales) and the current model sample.
        state_dicts = ["policy", "policy.autoencoder_optimizer", "policy.model_optimizer", "policy.value_optimizer"]
        return state_dicts, ["_last_hidden"]

    def _excluded_save_params(self) -> list[str]:
        # The start states and the prior's Gram block are recomputed from the replay when needed (the replay is not part
        # of the model file); the replay-sampling generator is saved with its state.
        return [*super()._excluded_save_params(), "_start_states", "_prior_gram", "_prior_gram_kernel"]

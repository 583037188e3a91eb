"""PSDRL: posterior sampling for deep reinforcement learning (Sasso, Conserva and Rauber, ICML 2023)."""

import io
import pathlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, TypeVar

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from typing_extensions import Unpack

from sb3_bayes.common.base_class import AlgorithmSettings, make_checked_env
from sb3_bayes.common.blr import FixedFeatureGram
from sb3_bayes.common.buffers import PickledReplayMixin
from sb3_bayes.common.episode_buffer import Episode, EpisodeReplayBuffer
from sb3_bayes.common.random_state import ExactResumeMixin
from sb3_bayes.common.rollout import dump_rollout_logs, final_observations
from sb3_bayes.common.utils import check_discrete_actions, check_finite_data, checked_step
from sb3_bayes.common.validation import ParameterValidator
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
    # [n] int64: how many of the replay's transitions each entry stands for (distinct_histories); None: one each
    counts: th.Tensor | None = None

    def select(self, index: th.Tensor) -> "StartStates":
        """The start states at ``index``."""
        projections = None if self.projections is None else self.projections[index]
        counts = None if self.counts is None else self.counts[index]
        return StartStates(self.states[index], projections, self.observation_keys[index], counts)

    @staticmethod
    def concatenate(parts: list["StartStates"]) -> "StartStates":
        """The start states of ``parts``, one after the other."""
        projections = [part.projections for part in parts if part.projections is not None]
        counts = [part.counts for part in parts if part.counts is not None]
        return StartStates(
            th.cat([part.states for part in parts]),
            th.cat(projections) if projections else None,
            th.cat([part.observation_keys for part in parts]),
            th.cat(counts) if counts else None,
        )


class HistoryTree(NamedTuple):
    """
    The replay's transitions grouped by their whole history (:func:`history_tree`): one node per distinct
    ``(o_0, a_0, ..., o_t, a_t, o_{t+1}, r_t)``, i.e. per distinct transition together with everything before it in its
    episode. A recurrent model's input at a node (``z_t``, ``a_t`` and ``h_t``, which follows the history) and its
    regression target (``z_{t+1}``, ``r_t``) are the same for every transition of the node.
    """

    parent: np.ndarray  # [n] int64: the node of the transition before (-1 at an episode's first step)
    depth: np.ndarray  # [n] int64: t
    observation: np.ndarray  # [n] int64: index of o_t among the distinct observations
    action: np.ndarray  # [n] int64: a_t
    next_observation: np.ndarray  # [n] int64: index of o_{t+1} among the distinct observations
    reward: np.ndarray  # [n] float32: r_t
    counts: np.ndarray  # [n] int64: the replay's transitions with this history
    observations: np.ndarray  # [u, *obs_shape]: the distinct observations (by content key), in order of appearance
    keys: np.ndarray  # [u] int64: their content keys


def history_tree(episodes: list[Episode]) -> HistoryTree:
    """
    Group the transitions of ``episodes`` by their whole history (:class:`HistoryTree`), nodes in order of first
    appearance (episodes in the given order, steps in order), so that a node's parent comes before it.

    The rewards are compared bit for bit (a stochastic reward makes its own node); observations by content key
    (:func:`~sb3_bayes.common.episode_buffer.observation_keys`).

    :param episodes: The replay's episodes.
    """
    nodes: dict[tuple[int, int, int, int], int] = {}
    key_index: dict[int, int] = {}
    first_seen: list[np.ndarray] = []
    parent: list[int] = []
    depth: list[int] = []
    observation: list[int] = []
    action: list[int] = []
    next_observation: list[int] = []
    reward: list[float] = []
    count: list[int] = []
    for episode in episodes:
        keys = episode.observation_keys().tolist()
        for t, key in enumerate(keys):
            if key not in key_index:
                key_index[key] = len(key_index)
                first_seen.append(episode.observations[t])
        reward_bits = episode.rewards.view(np.int32).tolist()
        actions = episode.actions.tolist()
        # The first step's parent names o_0 (a negative id), so that histories of different start observations differ.
        node = -1 - key_index[keys[0]]
        for t in range(len(episode)):
            history = (node, actions[t], key_index[keys[t + 1]], reward_bits[t])
            child = nodes.get(history)
            if child is None:
                child = nodes[history] = len(nodes)
                parent.append(max(node, -1))
                depth.append(t)
                observation.append(key_index[keys[t]])
                action.append(actions[t])
                next_observation.append(key_index[keys[t + 1]])
                reward.append(episode.rewards[t])
                count.append(0)
            count[child] += 1
            node = child
    obs_shape = episodes[0].observations.shape[1:] if episodes else ()
    parent_a, depth_a, observation_a, action_a, next_a, count_a = (
        np.asarray(values, dtype=np.int64) for values in (parent, depth, observation, action, next_observation, count)
    )
    return HistoryTree(
        parent_a,
        depth_a,
        observation_a,
        action_a,
        next_a,
        np.asarray(reward, dtype=np.float32),
        count_a,
        np.stack(first_seen) if first_seen else np.zeros((0, *obs_shape), dtype=np.float32),
        np.asarray(list(key_index), dtype=np.int64),
    )


@dataclass
class PSDRLReplay:
    """
    What :meth:`PSDRL.save_replay_buffer` writes: the episode replay and the state derived from it that a resumed run
    needs bit for bit. Episodes are shared by reference with the replay, and one pickle keeps them shared.

    :param buffer: The episode replay, running episodes included.
    :param value_fit_episodes: The episodes (as read at the last training round) whose start states the value fits
        reuse until the next round (``resample_schedule="episode"``); None otherwise.
    :param prior_gram: The random-feature prior's Gram block (float64, on the CPU) and the complete episodes summed
        in it, oldest first (None without a prior or before the first round). A fresh sum differs from the running one
        in the last bits (the order of summation), so it is kept rather than recomputed.
    :param prior_gram_kernel: The prior's projection, phase and feature scale the block was summed with.
    """

    buffer: EpisodeReplayBuffer
    value_fit_episodes: list[Episode] | None
    prior_gram: tuple[th.Tensor, list[Episode]] | None
    prior_gram_kernel: tuple[th.Tensor, ...] | None


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


class PSDRL(ExactResumeMixin, PickledReplayMixin, BaseAlgorithm):
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
    :param distinct_histories: Run the posterior refit (and collect the value fit's start states) over the replay's
        distinct histories instead of its transitions: every distinct ``(o_0, a_0, ..., o_t, a_t, o_{t+1}, r_t)`` once,
        with the number of stored transitions that share it (:func:`history_tree`). Transitions with the same history
        have the same input to the Bayesian last layer (the recurrent state follows the history) and the same target,
        and the regression's sufficient statistics of ``c`` identical rows are ``c`` times one row's, so the posterior
        is the one of the full refit, up to the order of float64 summation; every distinct observation is encoded and
        projected by the prior once. On tasks whose episodes repeat one another (DeepSea: one start state,
        deterministic moves, and an agent that walks the same paths again) the refit then costs per distinct history,
        not per stored transition. The value fit's start states carry the counts: ``state_weighting="visits"`` weighs
        them by their counts (a subset of ``value_max_states`` is drawn with these weights without replacement, so
        that a history is in it at most once), ``"distinct"`` as before. False (the original): every transition.
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
    :param _init_setup_model: Whether or not to build the network at the creation of the instance.
    :param settings: The arguments every algorithm passes on to SB3's ``BaseAlgorithm`` unchanged, by name and with SB3's
        defaults (:class:`~sb3_bayes.common.base_class.AlgorithmSettings`): ``stats_window_size``, ``tensorboard_log``,
        ``policy_kwargs``, ``verbose``, ``seed``, ``device``. Here ``policy_kwargs`` holds the policy's arguments: network
        sizes, prior scales, ``sampling``, ...
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy, "CnnPolicy": CnnPolicy}
    policy: PSDRLPolicy
    # save_replay_buffer / load_replay_buffer (PickledReplayMixin) pickle a PSDRLReplay.
    saved_replay_type = PSDRLReplay

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
        distinct_histories: bool = False,
        target_update_interval: int = 4,
        warmup_steps: int = 100_000,
        warmup_freq: int = 250,
        update_freq: int = 1000,
        resample_schedule: str = "round",
        reward_transform: str = "tanh",
        lookahead_cache_bytes: int = 2**31,
        _init_setup_model: bool = True,
        **settings: Unpack[AlgorithmSettings],
    ) -> None:
        env = make_checked_env(type(self).__name__, env, settings, self._check_spaces)
        super().__init__(
            policy,
            env,
            learning_rate,
            support_multi_env=True,
            supported_action_spaces=None,  # checked with a ValueError that names the space
            **settings,
        )
        self.buffer_size = buffer_size
        self.batch_size = batch_size
        self.sequence_length = sequence_length
        self.tbptt_window = tbptt_window
        self.autoencoder_iterations = autoencoder_iterations
        self.model_iterations = model_iterations
        self.value_iterations = value_iterations
        self.value_batch_size = value_batch_size
        self.value_max_states = value_max_states
        self.state_weighting = state_weighting
        self.distinct_histories = distinct_histories
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
        # The start states of the last round (value fits reuse them until the next round) and, with the "episode"
        # schedule, the episodes they come from, so that they can be rebuilt after loading (save_replay_buffer).
        self._start_states: StartStates | None = None
        self._value_fit_episodes: list[Episode] | None = None
        # The random-feature prior's block of the posterior's Gram matrix over the replay's complete episodes, and the
        # prior it was computed with (saved with the replay by save_replay_buffer, rebuilt when missing).
        self._prior_gram: FixedFeatureGram[Episode] | None = None
        self._prior_gram_kernel: tuple[th.Tensor, ...] | None = None
        # Recurrent state of the environments inside `learn`, and the steps since the last round (saved, so that
        # training resumes exactly).
        self._last_hidden = th.zeros(0)
        self._steps_since_round = 0
        if _init_setup_model:
            self._setup_model()

    @staticmethod
    def _check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
        check_discrete_actions(action_space, "PSDRL", alternative="PETS")
        if not isinstance(observation_space, spaces.Box):
            raise ValueError(
                f"PSDRL supports only Box observation spaces (images or vectors), got {observation_space}: "
                "flatten it (gymnasium's FlattenObservation)."
            )

    def _check_hyperparameters(self) -> None:
        """
        Check every constructor argument (types, ranges), at construction and at ``load(**kwargs)`` (rl-zoo3's
        ``--trained-agent`` passes the YAML's settings there), so that a bad value fails before any environment step.
        Integers and reals are normalised (a NumPy scalar from a YAML file or a sampler becomes an ``int`` or a
        ``float``). The ``policy_kwargs`` entries are checked by the policy's constructor.
        """
        check = ParameterValidator(type(self).__name__)
        self.learning_rate = check.learning_rate("learning_rate", self.learning_rate)
        self.buffer_size = check.integer("buffer_size", self.buffer_size)
        self.batch_size = check.integer("batch_size", self.batch_size)
        self.sequence_length = check.integer("sequence_length", self.sequence_length)
        # A window longer than the sequences means no truncation, which is allowed.
        self.tbptt_window = check.integer("tbptt_window", self.tbptt_window)
        self.autoencoder_iterations = check.integer("autoencoder_iterations", self.autoencoder_iterations)
        self.model_iterations = check.integer("model_iterations", self.model_iterations)
        self.value_iterations = check.integer("value_iterations", self.value_iterations)
        self.value_batch_size = check.integer("value_batch_size", self.value_batch_size)
        self.value_max_states = check.optional(check.integer, "value_max_states", self.value_max_states)
        check.choice("state_weighting", self.state_weighting, STATE_WEIGHTINGS)
        self.distinct_histories = check.boolean("distinct_histories", self.distinct_histories)
        self.target_update_interval = check.integer("target_update_interval", self.target_update_interval)
        self.warmup_steps = check.integer("warmup_steps", self.warmup_steps, minimum=0)
        self.warmup_freq = check.integer("warmup_freq", self.warmup_freq)
        self.update_freq = check.integer("update_freq", self.update_freq)
        check.choice("resample_schedule", self.resample_schedule, RESAMPLE_SCHEDULES)
        check.choice("reward_transform", self.reward_transform, REWARD_TRANSFORMS)
        self.lookahead_cache_bytes = check.integer("lookahead_cache_bytes", self.lookahead_cache_bytes, minimum=0)
        check.base_algorithm_arguments(self)

    def _setup_model(self) -> None:
        self._check_hyperparameters()
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
        if self.replay_buffer is None:
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
            checked_step(policy.autoencoder_optimizer, loss, "the PSDRL autoencoder loss")
            losses.append(loss.detach())
        return float(th.stack(losses).mean())

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
                checked_step(policy.model_optimizer, window_loss, "the PSDRL transition model loss")
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
            checked_step(policy.model_optimizer, terminal_loss, "the PSDRL terminal model loss")
            transition_losses.append(transition_loss)
            terminal_losses.append(terminal_loss.detach())
        return float(th.stack(transition_losses).mean()), float(th.stack(terminal_losses).mean())

    def _replay_chunks(self, chunk_transitions: int = 8192, episodes: list[Episode] | None = None) -> Iterator[ReplayChunk]:
        """
        Run the encoder and the recurrent part of the transition model over every stored episode from its start
        (``h`` follows the data), in chunks of episodes.

        :param chunk_transitions: Episodes are processed together up to about this many (padded) steps; the GRU runs
            step by step over a chunk.
        :param episodes: The episodes to run over (None: the replay's, :meth:`EpisodeReplayBuffer.all_episodes`).
        """
        assert self.replay_buffer is not None
        policy = self.policy
        if episodes is None:
            episodes = list(self.replay_buffer.all_episodes())
        if self.distinct_histories:
            yield from self._history_chunks(history_tree(episodes), chunk_transitions)
            return
        episodes = sorted(episodes, key=len)  # similar lengths together: little padding
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

    def _history_chunks(self, tree: HistoryTree, chunk_transitions: int = 8192) -> Iterator[ReplayChunk]:
        """
        :meth:`_replay_chunks` over the distinct histories of ``tree`` (``distinct_histories``): one entry per node, with
        its count in the start states. Every distinct observation is encoded (and projected by the prior) once; the
        recurrent model runs depth by depth, a node's ``h_t`` being its parent's ``h_{t+1}``.

        :param tree: :func:`history_tree` of the episodes.
        :param chunk_transitions: Nodes per chunk.
        """
        policy, device = self.policy, self.device
        n_nodes = len(tree.parent)
        if n_nodes == 0:
            return
        # The distinct observations, encoded and projected in chunks (frames of a large replay need not fit at once).
        latent_parts, projection_parts = [], []
        for first in range(0, len(tree.observations), chunk_transitions):
            processed = policy.preprocess(th.as_tensor(tree.observations[first : first + chunk_transitions], device=device))
            latent_parts.append(policy.autoencoder.encode(processed))  # type: ignore[operator]
            projection_parts.append(policy.prior_projection(processed))
        latents = th.cat(latent_parts)
        projections = None if projection_parts[0] is None else th.cat(projection_parts)  # type: ignore[arg-type]
        parent = th.as_tensor(tree.parent, device=device)
        depth = th.as_tensor(tree.depth, device=device)
        observation = th.as_tensor(tree.observation, device=device)
        one_hot = policy.one_hot(th.as_tensor(tree.action, device=device))
        hidden = policy.initial_hidden(n_nodes)  # h_t before each node's transition
        next_hidden = th.zeros_like(hidden)  # h_{t+1} after it
        for t in range(int(depth.max()) + 1):
            nodes = (depth == t).nonzero().squeeze(1)
            if t > 0:  # the first step of an episode starts from h_0 = 0
                hidden[nodes] = next_hidden[parent[nodes]]
            next_hidden[nodes] = policy.transition.recur(latents[observation[nodes]], one_hot[nodes], hidden[nodes])
        rewards = th.as_tensor(tree.reward, device=device)
        counts = th.as_tensor(tree.counts, device=device)
        next_observation = th.as_tensor(tree.next_observation, device=device)
        keys = th.as_tensor(tree.keys, device=device)
        for first in range(0, n_nodes, chunk_transitions):
            index = th.arange(first, min(first + chunk_transitions, n_nodes), device=device)
            obs = observation[index]
            yield ReplayChunk(
                next_hidden[index],
                latents[next_observation[index]],
                one_hot[index],
                rewards[index],
                StartStates(
                    th.cat([latents[obs], hidden[index]], dim=-1),
                    None if projections is None else projections[obs],
                    keys[obs],
                    counts[index],
                ),
            )

    def _replay_features(
        self, chunk_transitions: int = 8192, episodes: list[Episode] | None = None
    ) -> Iterator[tuple[th.Tensor, th.Tensor, StartStates]]:
        """
        The Bayesian last layer's regression data over every stored transition (:meth:`_replay_chunks`).

        :param chunk_transitions: See :meth:`_replay_chunks`.
        :param episodes: See :meth:`_replay_chunks`.
        :return: Chunks of ``(Bayesian features [m, d], targets [m, latent + 1], start states)``, with the start
            state ``[z_t, h_t]`` before each transition, the prior's projection of ``o_t`` and its content key.
        """
        policy = self.policy
        for chunk in self._replay_chunks(chunk_transitions, episodes):
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

    def _prior_kernel(self) -> tuple[th.Tensor, ...] | None:
        """What the prior's Gram block depends on: its projection, phase and feature scale (None without a prior)."""
        policy = self.policy
        if policy.prior_kernel is None:
            return None
        return policy.prior_kernel.projection, policy.prior_kernel.phase, th.tensor(policy.prior_feature_scale)

    def _fixed_prior_gram(self) -> th.Tensor | None:
        """
        ``Psi^T Psi`` of the random-feature prior's columns over every stored transition (None without a prior).

        These columns depend on the observation and action only, so their block of the Gram matrix changes only by the
        episodes that entered or left the replay: complete episodes are summed once (:class:`FixedFeatureGram`),
        running ones at every call. At ``K = 2048`` and 20k transitions this is 170 of the round's 180 GFLOP.
        """
        policy, buffer = self.policy, self.replay_buffer
        kernel = self._prior_kernel()
        if kernel is None:
            return None
        assert buffer is not None
        stale = self._prior_gram_kernel is None or not all(th.equal(a, b) for a, b in zip(kernel, self._prior_gram_kernel))
        if self._prior_gram is None or stale:
            self._prior_gram = FixedFeatureGram(policy.prior_features, self._episode_prior_features)
            self._prior_gram_kernel = tuple(part.clone() for part in kernel)
        gram = self._prior_gram.update(buffer.episodes).to(self.device)
        running = list(buffer.all_episodes())[len(buffer.episodes) :]
        return gram + self._prior_gram.contribution(running).to(self.device) if running else gram

    def _fit_posterior(self, refit: bool = True, episodes: list[Episode] | None = None) -> StartStates:
        """
        Recompute the Bayesian linear regression of the last layer on the whole buffer (the features changed with
        the network), and return the start states of every transition for value fitting.

        :param refit: False only collects the start states (e.g. after loading) and leaves the posterior as it is.
        :param episodes: The episodes to run over: for a refit, the replay's as read now (its prior Gram block is the
            replay's); without one, possibly those of an earlier round. None: read the replay's now.
        """
        starts: list[StartStates] = []

        def chunks() -> Iterator[tuple[th.Tensor, th.Tensor] | tuple[th.Tensor, th.Tensor, th.Tensor]]:
            for features, targets, start_states in self._replay_features(episodes=episodes):
                starts.append(start_states)
                # A distinct history stands for `count` identical rows (distinct_histories).
                yield (features, targets) if start_states.counts is None else (features, targets, start_states.counts)

        with th.no_grad():
            if refit:
                # A non-finite fit raises before it replaces the posterior (sb3_bayes.common.blr).
                self.policy.posterior.fit(chunks(), fixed_gram=self._fixed_prior_gram())
            else:  # the start states only: no head, no Bayesian features
                starts = [chunk.start_states for chunk in self._replay_chunks(episodes=episodes)]
        return StartStates.concatenate(starts)

    def _value_fit_states(self, start: StartStates) -> tuple[StartStates, th.Tensor | None]:
        """
        The start states of one value fit (``value_max_states``, ``state_weighting``) and their loss weights
        (None: equal weights).
        """
        n_states, max_states = start.states.shape[0], self.value_max_states
        weights = None
        if start.counts is not None:  # distinct histories, each standing for `counts` transitions
            weights = start.counts.double()
            if self.state_weighting == "distinct":  # a history weighs its share of its observation's transitions
                _, inverse = th.unique(start.observation_keys, return_inverse=True)
                per_key = th.zeros(int(inverse.max()) + 1, dtype=th.float64, device=weights.device)
                weights = weights / per_key.index_add(0, inverse, weights)[inverse]
        elif self.state_weighting == "distinct":
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
                # A sampled model that predicts huge rewards (large prior scales) can make the targets overflow, too.
                checked_step(policy.value_optimizer, loss, "the PSDRL value network loss")
                losses.append(loss.detach())
                self.n_value_updates += 1
                if self.n_value_updates % self.target_update_interval == 0:
                    policy.value_target.load_state_dict(policy.value.state_dict())
        return float(th.stack(losses).mean())

    def train(self) -> None:
        """One training round: autoencoder, transition and terminal models, posterior, sample, value network."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizers)
        autoencoder_loss = self._train_autoencoder()
        transition_loss, terminal_loss = self._train_transition_and_terminal()
        assert self.replay_buffer is not None
        episodes = list(self.replay_buffer.all_episodes())
        self._start_states = self._fit_posterior(episodes=episodes)
        # "episode": the value fits at the episode ends until the next round reuse these start states; their episodes
        # are kept (and saved by save_replay_buffer) so that a loaded model rebuilds exactly these start states.
        self._value_fit_episodes = episodes if self.resample_schedule == "episode" else None
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
        if self._start_states is None:  # after loading: from the last round's episodes, or else the current replay
            self._start_states = self._fit_posterior(refit=False, episodes=self._value_fit_episodes)
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
        # SB3 resets the environments for a new run and for a model loaded with force_reset (no last observation).
        env_restarts = reset_num_timesteps or self._last_obs is None
        total_timesteps, callback = self._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        callback.on_training_start(locals(), globals())
        assert self.env is not None and self._last_obs is not None
        check_finite_data(self._last_obs, "observation", "PSDRL")
        buffer = self._ensure_replay_buffer()
        if env_restarts or buffer.n_envs != self.n_envs:
            # The running episodes (of a loaded replay, or of an earlier learn) cannot go on after a reset: joining the
            # new steps to them would invent a transition. A run continued on its own environments keeps them.
            buffer.truncate_running(self.n_envs)
        if env_restarts or len(self._last_hidden) != self.n_envs:
            self._last_hidden = self.policy.initial_hidden(self.n_envs)
        if reset_num_timesteps:
            self._steps_since_round = 0
        continue_training = True
        while continue_training and self.num_timesteps < total_timesteps:
            obs = np.asarray(self._last_obs)
            self.policy.set_training_mode(False)
            actions_t, next_hidden = self.policy.act(th.as_tensor(obs, device=self.device), self._last_hidden.to(self.device))
            actions = actions_t.cpu().numpy()
            new_obs, rewards, dones, infos = self.env.step(actions)
            next_obs, terminations = final_observations(new_obs, dones, infos)
            # Non-finite data are refused before they change anything (replay, recurrent state, counters). The
            # observations after the step are the final ones of the episodes that ended and the reset ones.
            check_finite_data(next_obs, "observation", "PSDRL")
            check_finite_data(new_obs, "observation", "PSDRL")
            check_finite_data(rewards, "reward", "PSDRL")
            self._last_hidden = next_hidden
            self.num_timesteps += self.n_envs
            self._steps_since_round += self.n_envs
            callback.update_locals(locals())
            continue_training = callback.on_step()
            self._update_info_buffer(infos, dones)
            stored_rewards = np.tanh(rewards) if self.reward_transform == "tanh" else rewards
            buffer.add(obs, actions, stored_rewards, next_obs, dones, terminations)
            self._last_obs = new_obs  # type: ignore[assignment]
            if dones.any():
                self._episode_num += int(dones.sum())
                done_mask = th.as_tensor(dones, device=self.device)[:, None]
                self._last_hidden = th.where(done_mask, th.zeros_like(self._last_hidden), self._last_hidden)
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            round_due = buffer.n_complete_episodes() > 0 and self._steps_since_round >= self._round_interval()
            # "round" (the original): train and resample whenever a round is due, also mid-episode. "episode" (PSRL):
            # the agent commits to one model per episode, so a due round waits for the next episode end, and every
            # episode end draws a new sample (on the networks just trained) and fits the value network to it.
            episode_end = self.resample_schedule == "episode" and bool(dones.any())
            if continue_training and round_due and (self.resample_schedule == "round" or episode_end):
                self.train()
                self._steps_since_round = 0
                if log_interval > 0 and self.n_training_rounds % log_interval == 0:
                    dump_rollout_logs(self)
            if continue_training and episode_end and self.n_training_rounds > 0:
                self._resample_and_fit_value()
        callback.on_training_end()
        return self

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        # The policy's state dict holds every network, the posterior (mean, Cholesky factor of the precision, prior
        # scales) and the current model sample.
        state_dicts = ["policy", "policy.autoencoder_optimizer", "policy.model_optimizer", "policy.value_optimizer"]
        return state_dicts, ["_last_hidden"]

    def _excluded_save_params(self) -> list[str]:
        # The start states are recomputed when needed, from the episodes of the last round where save_replay_buffer
        # saved them; those and the prior's Gram block travel with the replay, not with the model file. The
        # replay-sampling generator is saved with its state.
        replay_state = ["_start_states", "_value_fit_episodes", "_prior_gram", "_prior_gram_kernel"]
        return [*super()._excluded_save_params(), *replay_state]

    def _replay_to_save(self) -> PSDRLReplay | None:
        # The episode replay, running episodes included, with the state derived from it that a run continuing exactly
        # needs: the episodes whose start states the value fits reuse until the next round, and the random-feature
        # prior's Gram block (a running sum, which a fresh sum would not reproduce to the last bit).
        if self.replay_buffer is None:
            return None
        prior_gram = None
        if self._prior_gram is not None and self._prior_gram.gram is not None:
            prior_gram = (self._prior_gram.gram.cpu(), list(self._prior_gram.included))
        kernel = None if self._prior_gram_kernel is None else tuple(part.cpu() for part in self._prior_gram_kernel)
        return PSDRLReplay(self.replay_buffer, self._value_fit_episodes, prior_gram, kernel)

    def _restore_replay(self, replay: PSDRLReplay, path: str | pathlib.Path | io.BufferedIOBase) -> None:
        # Its running episodes are continued by the next ``learn`` when that continues the saved run on its own
        # environments (``load(..., env=<the same env>, force_reset=False)`` and ``learn(..., reset_num_timesteps=False)``,
        # which then draws what the uninterrupted run would have), and closed as truncated when the environments are
        # reset (rl-zoo3's ``--trained-agent``).
        assert isinstance(self.observation_space, spaces.Box)
        if replay.buffer.obs_shape != self.observation_space.shape:
            shapes = f"{replay.buffer.obs_shape}, the model's are {self.observation_space.shape}"
            raise ValueError(f"{path} holds observations of shape {shapes}: a replay of another environment.")
        self.replay_buffer = replay.buffer
        # Cached start states belong to the model's last round, not to the loaded replay's.
        self._start_states, self._value_fit_episodes = None, replay.value_fit_episodes
        self._prior_gram, self._prior_gram_kernel = None, None
        kernel = self._prior_kernel()
        if replay.prior_gram is not None and replay.prior_gram_kernel is not None and kernel is not None:
            # The block is reused only if it was summed with this model's prior (otherwise the next round sums afresh).
            if all(th.equal(saved, part.cpu()) for saved, part in zip(replay.prior_gram_kernel, kernel)):
                gram, included = replay.prior_gram
                self._prior_gram = FixedFeatureGram(self.policy.prior_features, self._episode_prior_features)
                self._prior_gram.gram, self._prior_gram.included = gram.to(self.device), deque(included)
                self._prior_gram_kernel = tuple(part.clone() for part in kernel)

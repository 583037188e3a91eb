"""PETS: probabilistic ensembles with trajectory sampling (Chua, Calandra, McAllister and Levine, NeurIPS 2018)."""

import io
import pathlib
import time
from dataclasses import asdict
from typing import ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule, TrainFreq, TrainFrequencyUnit
from typing_extensions import Unpack

from sb3_bayes.common.base_class import AlgorithmSettings, make_checked_env
from sb3_bayes.common.buffers import PickledReplayMixin, TransitionStore
from sb3_bayes.common.random_state import ExactResumeMixin
from sb3_bayes.common.rollout import dump_rollout_logs, final_observations
from sb3_bayes.common.trajectory_optimizers import Solution
from sb3_bayes.common.utils import check_finite, check_flat_box, checked_step, get_env_id, get_env_kwargs
from sb3_bayes.common.validation import HyperparameterValueError, ParameterValidator
from sb3_bayes.envs.known_rewards import KNOWN_MODEL_SPECS, get_known_spec
from sb3_bayes.pets.policies import MlpPolicy, PETSPolicy, PlannerSettings

SelfPETS = TypeVar("SelfPETS", bound="PETS")


class PETS(ExactResumeMixin, PickledReplayMixin, BaseAlgorithm):
    """
    Probabilistic Ensembles with Trajectory Sampling (PETS).

    A bootstrapped ensemble of probabilistic neural networks models the dynamics; actions are chosen by
    model-predictive control: at every step a trajectory optimiser (CEM by default) searches action sequences whose
    returns are estimated by propagating particles through the ensemble, and the first action of the best sequence
    is executed. The first episode is random; afterwards the model is retrained on all data after every episode.

    Every argument is checked when the model is built (and when ``load`` changes one). The reward model and the planner
    settings (``planner`` to ``planning_dtype``) have one home, these arguments: PETS hands them to the policy by name,
    and a ``policy_kwargs`` entry of the same name is an error.

    Paper: https://arxiv.org/abs/1805.12114

    :param policy: The policy model to use (``"MlpPolicy"`` or ``PETSPolicy``).
    :param env: The environment to learn from (if registered in Gym, can be str).
    :param learning_rate: Adam learning rate of the dynamics model (a schedule is accepted).
    :param buffer_size: Maximum number of transitions kept (memory grows as data arrives).
    :param learning_starts: Steps of random actions before planning may start; planning also waits for the first
        training round, so the first episode is always random with the default ``train_freq``.
    :param batch_size: Minibatch size of model training.
    :param n_epochs: Passes over every member's bootstrap sample per training round.
    :param train_freq: Training cadence, an int (steps) or a tuple such as ``(1, "episode")`` (the paper's).
    :param planner: ``"cem"`` (cross-entropy method), ``"icem"`` (improved CEM, Pinneri et al., 2020) or ``"random"``
        (random shooting).
    :param plan_horizon: Planning horizon (steps).
    :param popsize: Candidate action sequences per planner iteration (iCEM: of its first iteration).
    :param num_elites: Candidates the CEM (and iCEM) distribution is refit to.
    :param cem_iters: Maximum CEM iterations per action (iCEM: its iterations).
    :param cem_alpha: Weight of the previous CEM (and iCEM) distribution in each update.
    :param cem_epsilon: CEM stops once every variance is below this (iCEM has no early stop).
    :param n_particles: Particles per candidate.
    :param propagation: Uncertainty propagation: ``"E"``, ``"DS"``, ``"TS1"``, ``"TSinf"`` (the paper's) or ``"MM"``.
    :param reward_fn: None learns reward and termination with the dynamics; ``"auto"`` uses the known reward and
        termination functions of the environment's id; an env id (e.g. ``"Pendulum-v1"``) names them explicitly.
    :param planning_dtype: ``"float32"`` or ``"bfloat16"``: the planner multiplies with a bfloat16 copy of the model's
        weights, cast once after every training round (and load), while states and sums stay float32.
    :param icem_noise_beta: iCEM: exponent of the power spectrum ``1/f^beta`` of the action noise along the horizon
        (0: white noise; larger: smoother sequences).
    :param icem_population_decay: iCEM: the population of iteration ``i`` is ``popsize * decay^-i``, at least
        ``2 * num_elites``.
    :param icem_keep_elites_frac: iCEM: fraction of the elites kept for the next iteration and, shifted, for the next
        step.
    :param icem_execute: iCEM: ``"best"`` executes the first action of the best sequence found (the original's),
        ``"mean"`` that of the final mean.
    :param planning_threads: Torch threads while planning, restored afterwards (None: torch's setting). The planner's
        matrix products are small; on a shared CPU one thread can be many times faster than several.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance.
    :param settings: The arguments every algorithm passes on to SB3's ``BaseAlgorithm`` unchanged, by name and with SB3's
        defaults (:class:`~sb3_bayes.common.base_class.AlgorithmSettings`): ``stats_window_size``, ``tensorboard_log``,
        ``policy_kwargs``, ``verbose``, ``seed``, ``device``. Here ``policy_kwargs`` holds the policy's arguments: model type,
        ensemble size, network, ...; not the planner settings above.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy}
    policy: PETSPolicy
    # save_replay_buffer / load_replay_buffer (PickledReplayMixin) pickle the TransitionStore itself.
    saved_replay_type = TransitionStore

    def __init__(
        self,
        policy: str | type[PETSPolicy],
        env: GymEnv | str | None,
        learning_rate: float | Schedule = 1e-3,
        buffer_size: int = 1_000_000,
        learning_starts: int = 1,
        batch_size: int = 32,
        n_epochs: int = 5,
        train_freq: int | tuple[int, str] | TrainFreq = (1, "episode"),
        planner: str = "cem",
        plan_horizon: int = 25,
        popsize: int = 400,
        num_elites: int = 40,
        cem_iters: int = 5,
        cem_alpha: float = 0.1,
        cem_epsilon: float = 1e-3,
        n_particles: int = 20,
        propagation: str = "TSinf",
        reward_fn: str | None = None,
        planning_dtype: str = "float32",
        icem_noise_beta: float = 2.0,
        icem_population_decay: float = 1.25,
        icem_keep_elites_frac: float = 0.3,
        icem_execute: str = "best",
        planning_threads: int | None = None,
        _init_setup_model: bool = True,
        **settings: Unpack[AlgorithmSettings],
    ) -> None:
        env = make_checked_env(type(self).__name__, env, settings, self._check_spaces)
        super().__init__(
            policy,
            env,
            learning_rate,
            support_multi_env=True,
            supported_action_spaces=None,  # checked in `_setup_model` with a ValueError that names the space
            **settings,
        )
        self.buffer_size = buffer_size
        self.learning_starts = learning_starts
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.train_freq: int | tuple[int, str] | TrainFreq = train_freq
        self.planner = planner
        self.plan_horizon = plan_horizon
        self.popsize = popsize
        self.num_elites = num_elites
        self.cem_iters = cem_iters
        self.cem_alpha = cem_alpha
        self.cem_epsilon = cem_epsilon
        self.n_particles = n_particles
        self.propagation = propagation
        self.reward_fn = reward_fn  # "auto" becomes the env id in `_setup_model`, once checked
        self.planning_dtype = planning_dtype
        self.icem_noise_beta = icem_noise_beta
        self.icem_population_decay = icem_population_decay
        self.icem_keep_elites_frac = icem_keep_elites_frac
        self.icem_execute = icem_execute
        self.planning_threads = planning_threads
        # Number of completed training rounds; planning starts after the first one.
        self.n_training_rounds = 0
        # Progress towards the next training round, kept across `learn` calls (and saved) so that a resumed run trains
        # at the steps of an uninterrupted one.
        self._steps_since_training = 0
        self._episodes_since_training = 0
        self.replay_buffer: TransitionStore | None = None
        # Warm start and carried sequences (iCEM's shifted elites) of the planner inside `learn` (kept apart from the
        # policy's own, used by `predict`).
        self._rollout_warm_start = th.zeros(0)
        self._rollout_warm_elites = th.zeros(0)
        if _init_setup_model:
            self._setup_model()

    def _planner_settings(self) -> PlannerSettings:
        """The planner settings: arguments of PETS (their only home), handed to the policy that plans."""
        return PlannerSettings(**{name: getattr(self, name) for name in PlannerSettings.names()})

    def _check_hyperparameters(self) -> None:
        """
        Check every argument of PETS before anything is built (at construction and at ``load(path, **kwargs)``);
        ``policy_kwargs`` entries are checked by the policy's constructor.
        """
        check = ParameterValidator(type(self).__name__)
        check.learning_rate("learning_rate", self.learning_rate)
        check.integer("buffer_size", self.buffer_size)
        check.integer("learning_starts", self.learning_starts, minimum=0)
        check.integer("batch_size", self.batch_size)
        check.integer("n_epochs", self.n_epochs)
        self.train_freq = self._checked_train_freq(check)
        check.optional(check.choice, "reward_fn", self.reward_fn, ("auto", *KNOWN_MODEL_SPECS))
        planner_settings = self._planner_settings()
        planner_settings.check(check)
        check.base_algorithm_arguments(self)
        # The reward model and the planner settings are PETS arguments only: an entry in policy_kwargs would be a
        # second, silently competing home.
        if "planner_settings" in self.policy_kwargs:
            raise HyperparameterValueError(
                f"{check.owner}: policy_kwargs planner_settings is built by PETS from its own arguments: set planner, "
                "plan_horizon, popsize, ... as PETS(name=...) or top-level YAML keys instead.",
                "planner_settings",
            )
        own_settings = {"reward_fn": self.reward_fn, **asdict(planner_settings)}
        conflicts = sorted(own_settings.keys() & self.policy_kwargs.keys())
        if conflicts:
            name = conflicts[0]
            raise HyperparameterValueError(
                f"{check.owner}: {name} is a PETS argument, not a policy_kwargs entry (got policy_kwargs {name}="
                f"{self.policy_kwargs[name]!r} beside {name}={own_settings[name]!r}): set it once, as PETS({name}=...) "
                "or a top-level YAML key.",
                name,
            )

    def _checked_train_freq(self, check: ParameterValidator) -> TrainFreq:
        """``train_freq`` as a ``TrainFreq``: an int counts steps, a pair is ``(frequency, "step" | "episode")``."""
        train_freq = self.train_freq
        allowed = "an integer >= 1 or a pair (frequency, 'step' | 'episode')"
        if not isinstance(train_freq, (tuple, list)):  # YAML files give a list, Python users a tuple or a TrainFreq
            return TrainFreq(check.integer("train_freq", train_freq), TrainFrequencyUnit.STEP)
        units = [unit.value if isinstance(unit, TrainFrequencyUnit) else unit for unit in train_freq[1:]]
        check.relation("train_freq", train_freq, len(train_freq) == 2 and units[0] in ("step", "episode"), allowed)
        return TrainFreq(check.integer("train_freq", train_freq[0]), TrainFrequencyUnit(units[0]))

    def _resolve_reward_fn(self, reward_fn: str | None) -> str | None:
        """Turn ``"auto"`` into the env id and check that a known model matches the environment."""
        if reward_fn is None:
            return None
        env_id = get_env_id(self.env)
        if reward_fn == "auto":
            if env_id is None:
                raise ValueError("reward_fn='auto' needs an environment with a registered id: pass the env id instead.")
            reward_fn = env_id
        spec = get_known_spec(reward_fn)
        env_kwargs = get_env_kwargs(self.env)
        missing = {k: v for k, v in spec.env_kwargs.items() if env_kwargs.get(k) != v}
        if self.env is not None and missing:
            raise ValueError(
                f"The known reward of {reward_fn} is exact only with env kwargs {spec.env_kwargs}, the environment has "
                f"{ {k: env_kwargs.get(k) for k in missing} }: make it with those kwargs (env_kwargs in rl-zoo3)."
            )
        return reward_fn

    def _setup_model(self) -> None:
        self._check_hyperparameters()
        self.reward_fn = self._resolve_reward_fn(self.reward_fn)
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self._check_spaces(self.observation_space, self.action_space)
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space,
            self.action_space,
            self.lr_schedule,
            reward_fn=self.reward_fn,
            planner_settings=self._planner_settings(),
            **self.policy_kwargs,  # type: ignore[arg-type]
        )
        self.policy = self.policy.to(self.device)

    @staticmethod
    def _check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
        check_flat_box(observation_space, "observation", "PETS")
        check_flat_box(action_space, "action", "PETS", finite=True)

    def _ensure_replay_buffer(self) -> TransitionStore:
        if self.replay_buffer is None:
            assert isinstance(self.observation_space, spaces.Box) and isinstance(self.action_space, spaces.Box)
            self.replay_buffer = TransitionStore(
                self.observation_space.shape, self.action_space.shape[0], self.buffer_size, algo=type(self).__name__
            )
        return self.replay_buffer

    def train(self) -> None:
        """
        One training round (section 4.1): refit the input statistics on all data, draw a fresh bootstrap sample for
        every member, and run ``n_epochs`` epochs of minibatch Adam on the summed per-member losses plus the weight
        decay and log-variance-bound regularisers.
        """
        buffer = self._ensure_replay_buffer()
        data = buffer.all()
        n = len(data.rewards)
        if n == 0:
            return
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        dynamics = self.policy.dynamics

        def to_tensor(x: np.ndarray) -> th.Tensor:
            return th.as_tensor(x, device=self.device, dtype=th.float32)

        obs, actions, next_obs = to_tensor(data.observations), to_tensor(data.actions), to_tensor(data.next_observations)
        raw_inputs = dynamics.raw_inputs(obs, actions)
        dynamics.input_normalizer.fit(raw_inputs)
        inputs = dynamics.input_normalizer(raw_inputs)
        targets = dynamics.targets(obs, next_obs, to_tensor(data.rewards))
        terminations = to_tensor(data.terminations)
        ensemble_size = dynamics.ensemble_size
        bootstrap = th.randint(n, (ensemble_size, n), device=self.device)
        losses = []
        for _ in range(self.n_epochs):
            # Each member visits its own bootstrap sample in its own random order.
            order = bootstrap.gather(1, th.rand(ensemble_size, n, device=self.device).argsort(dim=1))
            epoch_loss = th.zeros((), device=self.device)
            for start in range(0, n, self.batch_size):
                index = order[:, start : start + self.batch_size]
                loss = dynamics.loss(inputs[index], targets[index], terminations[index])
                regularised = (
                    loss
                    + dynamics.network.weight_decay_penalty(self.policy.weight_decay)
                    + dynamics.network.logvar_bound_penalty()
                )
                # Raises before the step on a NaN/inf loss or gradient: the weights stay those of the last finite one.
                checked_step(self.policy.optimizer, regularised, "the PETS dynamics model loss")
                epoch_loss = epoch_loss + loss.detach() * index.shape[1]
            losses.append(epoch_loss.item() / n)
        self.policy.set_training_mode(False)
        self.n_training_rounds += 1
        with th.no_grad():
            prediction = dynamics.predict(obs.unsqueeze(0), actions.unsqueeze(0))
            state_mse = (prediction.mean[..., : dynamics.obs_dim] - next_obs).pow(2).mean()
        check_finite(state_mse, "The PETS model's prediction error on its training data", "lower learning_rate")
        self.logger.record("train/model_loss", losses[-1])
        self.logger.record("train/state_mse", state_mse.item())
        self.logger.record("train/n_transitions", n)
        self.logger.record("train/n_updates", self.n_training_rounds * self.n_epochs * -(-n // self.batch_size))
        if dynamics.network.probabilistic:
            self.logger.record("train/max_logvar", dynamics.network.max_logvar.mean().item())
            self.logger.record("train/min_logvar", dynamics.network.min_logvar.mean().item())

    def _sample_actions(self, obs: np.ndarray) -> np.ndarray:
        """Random actions until the model has been trained once (and ``learning_starts`` steps), then MPC."""
        n_envs = self.n_envs
        if self.num_timesteps < self.learning_starts or self.n_training_rounds == 0:
            return np.stack([self.action_space.sample() for _ in range(n_envs)])
        obs_tensor = th.as_tensor(obs, device=self.device, dtype=th.float32)
        start = time.perf_counter()
        result = self.policy.plan(obs_tensor, self._rollout_warm_start, self._rollout_warm_elites)
        actions = result.actions.cpu().numpy()  # the host sync ends the timing
        self._record_planner_statistics(obs_tensor, result.solution, time.perf_counter() - start)
        self._rollout_warm_start, self._rollout_warm_elites = result.warm_start, result.warm_elites
        assert isinstance(self.action_space, spaces.Box)
        return np.clip(actions, self.action_space.low, self.action_space.high)

    def _record_planner_statistics(self, obs: th.Tensor, solution: Solution, seconds: float) -> None:
        """
        Planner statistics, averaged by the logger over the steps between two dumps: seconds per action (per
        environment), the final standard deviation of the sampling distribution (CEM, iCEM), the predicted return of
        the elites and the members' disagreement along the executed plan (``PETSPolicy.plan_disagreement``: one
        forward pass per step of the horizon for the ``n_envs`` states, the only model evaluation added).
        """
        self.logger.record_mean("planner/seconds_per_action", seconds / self.n_envs)
        if solution.std is not None:
            self.logger.record_mean("planner/final_std", solution.std.mean().item())
        self.logger.record_mean("planner/elite_return", solution.elite_return.mean().item())
        if self.policy.dynamics.ensemble_size > 1:  # a single member never disagrees
            disagreement = self.policy.plan_disagreement(obs, solution.plan)
            self.logger.record_mean("planner/ensemble_disagreement", disagreement.mean().item())

    def learn(
        self: SelfPETS,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "PETS",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfPETS:
        """
        Collect experience with MPC and retrain the model on the configured cadence.

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
        assert isinstance(self.train_freq, TrainFreq)
        buffer = self._ensure_replay_buffer()
        if reset_num_timesteps:
            self._steps_since_training = 0
            self._episodes_since_training = 0
        continue_training = True
        while continue_training and self.num_timesteps < total_timesteps:
            obs = np.asarray(self._last_obs)
            actions = self._sample_actions(obs)
            new_obs, rewards, dones, infos = self.env.step(actions)
            self.num_timesteps += self.n_envs
            self._steps_since_training += 1
            callback.update_locals(locals())
            continue_training = callback.on_step()
            self._update_info_buffer(infos, dones)
            next_obs, terminations = final_observations(new_obs, dones, infos)
            buffer.add(obs, actions, rewards, next_obs, terminations)
            self._last_obs = new_obs  # type: ignore[assignment]
            if dones.any():
                self._episode_num += int(dones.sum())
                self._episodes_since_training += int(dones.sum())
                self._rollout_warm_start = self.policy.reset_warm_start(self._rollout_warm_start, dones)
                self._rollout_warm_elites = self.policy.reset_warm_elites(self._rollout_warm_elites, dones)
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            due = (
                self._episodes_since_training >= self.train_freq.frequency
                if self.train_freq.unit == TrainFrequencyUnit.EPISODE
                else self._steps_since_training >= self.train_freq.frequency
            )
            if continue_training and due and self.num_timesteps >= self.learning_starts:
                self.train()
                self._steps_since_training = 0
                self._episodes_since_training = 0
                if log_interval > 0 and self.n_training_rounds % log_interval == 0:
                    dump_rollout_logs(self)
        callback.on_training_end()
        return self

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        # The policy's state dict holds the ensemble, the log-variance bounds and the input statistics; the planner
        # states are plain tensors.
        return ["policy", "policy.optimizer"], [
            "policy.plan_warm_start",
            "policy.plan_warm_elites",
            "_rollout_warm_start",
            "_rollout_warm_elites",
        ]

    def _replay_to_save(self) -> TransitionStore | None:
        return self.replay_buffer

    def _restore_replay(self, replay: TransitionStore, path: str | pathlib.Path | io.BufferedIOBase) -> None:
        # Transitions are stored one by one: nothing derived from them needs rebuilding.
        self.replay_buffer = replay

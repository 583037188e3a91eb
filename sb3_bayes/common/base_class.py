"""What the algorithm classes share on top of SB3's ``BaseAlgorithm``: the arguments every one forwards to it unchanged,
the check of the env's spaces before SB3 wraps it, and ``learn`` as SB3's own algorithms have it."""

from collections.abc import Callable
from typing import Any, ClassVar, TypedDict, TypeVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm, maybe_make_env
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback

from sb3_bayes.common.validation import ParameterValidator

SelfNamedRuns = TypeVar("SelfNamedRuns", bound="NamedRunsMixin")


class AlgorithmSettings(TypedDict, total=False):
    """
    The arguments of SB3's ``BaseAlgorithm`` that every algorithm of sb3-bayes takes by name (``**settings``) and
    forwards unchanged, with SB3's defaults (given in brackets).

    :param stats_window_size: Number of episodes over which the logged success rate, episode length and return are
        averaged (100).
    :param tensorboard_log: The log location for tensorboard (None: no logging).
    :param policy_kwargs: Additional arguments passed to the policy when it is built; see the algorithm's policy class
        for what it takes (None).
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages (0).
    :param seed: Seed for the pseudo random generators, an integer in [0, 2**32 - 1] (None: not seeded).
    :param device: Device on which the code should run ("auto": the GPU if there is one).
    """

    stats_window_size: int
    tensorboard_log: str | None
    policy_kwargs: dict[str, Any] | None
    verbose: int
    seed: int | None
    device: th.device | str


def make_checked_env(
    algorithm: str,
    env: GymEnv | str | None,
    settings: AlgorithmSettings,
    check_spaces: Callable[[spaces.Space, spaces.Space], None],
) -> GymEnv | None:
    """
    Make the env (from its id, as SB3 would) and check its spaces before SB3 wraps it, so that an unsupported space is
    a ``ValueError`` that names it rather than SB3's assertion.

    :param algorithm: The algorithm's name, for the error messages.
    :param env: The env, its id or None (a model built to be loaded).
    :param settings: The algorithm's :class:`AlgorithmSettings` (``verbose`` is used here).
    :param check_spaces: Raises a ``ValueError`` for an unsupported observation or action space.
    :return: The env (None if ``env`` is None).
    """
    # SB3 compares ``verbose`` while it makes and wraps the env, before the algorithm checks its other arguments.
    verbose = ParameterValidator(algorithm).integer("verbose", settings.get("verbose", 0), minimum=0)
    if env is None:
        return None
    env = maybe_make_env(env, verbose)
    check_spaces(env.observation_space, env.action_space)
    return env


class NamedRunsMixin(BaseAlgorithm):
    """
    ``learn`` as SB3's own algorithms have it (``PPO.learn``, ``DQN.learn``): the TensorBoard run is named after the
    algorithm's class (``BayesianDQN_1``, not SB3's generic ``run_1``) and ``log_interval`` has the algorithm's own
    default. Placed before the SB3 base class, whose ``learn`` does the work.
    """

    #: ``learn``'s default ``log_interval`` (episodes for off-policy algorithms, rollouts for on-policy ones).
    default_log_interval: ClassVar[int] = 4

    def learn(
        self: SelfNamedRuns,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int | None = None,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfNamedRuns:
        """
        Return a trained model.

        :param total_timesteps: The total number of environment steps to train on.
        :param callback: Callback(s) called at every step with state of the algorithm.
        :param log_interval: Write the logs every ``log_interval`` episodes (off-policy) or rollouts (on-policy); None:
            the algorithm's ``default_log_interval``.
        :param tb_log_name: The name of the run for TensorBoard logging; None: the algorithm's class name.
        :param reset_num_timesteps: Whether or not to reset the current timestep number (used in logging).
        :param progress_bar: Display a progress bar using tqdm and rich.
        :return: The trained model.
        """
        # The next class in the MRO (SB3's OffPolicyAlgorithm or OnPolicyAlgorithm) implements the abstract method.
        return super().learn(  # type: ignore[safe-super]
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=self.default_log_interval if log_interval is None else log_interval,
            tb_log_name=type(self).__name__ if tb_log_name is None else tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

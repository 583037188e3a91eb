"""Behaviour shared by the algorithm classes that build on SB3's ``OnPolicyAlgorithm`` / ``OffPolicyAlgorithm``."""

from typing import ClassVar, TypeVar

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.type_aliases import MaybeCallback

SelfNamedRuns = TypeVar("SelfNamedRuns", bound="NamedRunsMixin")


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

"""
Continual learning of BayesianDDPG and BayesianDQN: one implementation of what ``consolidate()`` does at a task switch,
of the penalty it adds to the losses and of what of it is saved, with one meaning of every argument.

``consolidation`` picks the method:

- ``"ewc"``, elastic weight consolidation (Kirkpatrick et al., 2017, "Overcoming catastrophic forgetting in neural
  networks", eq. 3): after a task the parameters ``theta*`` are anchored and the diagonal Fisher ``F`` of the task's
  likelihood is estimated; learning the next tasks adds ``ewc_lambda * sum_i F_i (theta_i - theta*_i)^2`` to the loss
  of every regularised network (the paper's ``lambda / 2`` is ``ewc_lambda``). Over several tasks the Fisher terms add
  up, with one anchor at the latest parameters (``ewc_online=False``, as Continual World's EWC), or the old ones decay,
  ``F <- ewc_decay * F + F_new`` (``ewc_online=True``: online EWC, Schwarz et al., 2018, "Progress & Compress", eq. 8),
  so that old tasks fade instead of freezing the network.
- ``"vcl"``, variational continual learning (Nguyen et al., 2018, "Variational Continual Learning", eq. 4): the
  posterior ``q_t`` after task ``t`` becomes the prior of task ``t + 1``, so the KL term of the variational objective
  pulls towards what was learned instead of towards the initial prior. Only Bayes-by-backprop layers have a prior.
- ``"none"``: ``consolidate()`` does nothing.

``ewc_modules`` means the same in both algorithms: modules of the algorithm, named by their attribute path, either a
network the algorithm consolidates (BayesianDDPG: ``"actor"``, ``"critic"``; BayesianDQN: ``"q_net"``) or a part of
one (``"actor.mu"``, ``"critic.qf0"``, ``"q_net.head"``, ``"q_net.hidden"``). EWC anchors every trainable parameter
under those modules except the log variances of Bayes-by-backprop layers: the Fisher is taken with the posterior-mean
weights, where the likelihood does not depend on the variances (its Fisher w.r.t. them is zero).

The Fisher of each network is the algorithm's (``_ewc_fisher``: BayesianDDPG takes that of a unit-variance Gaussian
around the actor's pre-squash action and the critics' Q-values, BayesianDQN the empirical Fisher of its TD loss),
estimated on the most recent ``n_samples`` transitions of the replay buffer: the task just learned, also when the
buffer still holds transitions of earlier tasks.
"""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import DictReplayBufferSamples, ReplayBufferSamples
from torch import nn

from sb3_bayes.common.bayesian_layers import posterior_to_prior
from sb3_bayes.common.ewc import ElasticWeightConsolidation
from sb3_bayes.common.utils import checked_step
from sb3_bayes.common.validation import ParameterValidator

#: Values of the ``consolidation`` argument.
CONSOLIDATIONS = ("none", "ewc", "vcl")
#: Rows of the replay buffer read per chunk when a window of recent transitions is processed (Fisher, BDQN refit).
RECENT_CHUNK_ROWS = 1024

ReplaySamples = ReplayBufferSamples | DictReplayBufferSamples


def ewc_parameter_names(module: nn.Module, prefix: str = "") -> list[str]:
    """
    The parameters EWC anchors in ``module``: every trainable one except the log variances of Bayes-by-backprop layers
    (the Fisher is taken at the posterior-mean weights, where the likelihood does not depend on them).

    :param module: A network or a part of one.
    :param prefix: Path of ``module`` in its network (``"head"``), prepended to the names.
    :return: Names as in the network's ``named_parameters()``, in that order.
    """
    return [name for name, p in module.named_parameters(prefix=prefix) if p.requires_grad and not name.endswith("log_var")]


class EWCState(nn.ModuleDict):
    """
    The EWC state of one algorithm: an :class:`~sb3_bayes.common.ewc.ElasticWeightConsolidation` (Fisher diagonal and
    anchor buffers) per regularised network, keyed by the network's attribute name, saved as one state dict.

    :param networks: Network name -> ``(network, names of its parameters to anchor)``.
    :param ewc_lambda: Weight of the penalty.
    :param online: Online EWC (decaying old Fisher terms) instead of their sum.
    :param decay: Decay of the old Fisher in online EWC.
    """

    def __init__(
        self, networks: Mapping[str, tuple[nn.Module, Sequence[str]]], ewc_lambda: float, online: bool, decay: float
    ) -> None:
        super().__init__(
            {
                name: ElasticWeightConsolidation(module, ewc_lambda, online=online, decay=decay, parameter_names=names)
                for name, (module, names) in networks.items()
            }
        )

    def __getitem__(self, key: str) -> ElasticWeightConsolidation:
        module = super().__getitem__(key)
        assert isinstance(module, ElasticWeightConsolidation)
        return module

    def networks(self) -> list[tuple[str, ElasticWeightConsolidation]]:
        """:return: ``(network name, its EWC state)`` pairs."""
        return [(name, self[name]) for name in self.keys()]

    @property
    def n_consolidations(self) -> int:
        """Number of consolidations the state holds (the same for every network)."""
        return max((int(ewc.n_consolidations) for _, ewc in self.networks()), default=0)

    def penalty(self, name: str, network: nn.Module) -> th.Tensor | None:
        """
        ``ewc_lambda * sum_i F_i (theta_i - theta*_i)^2`` over the anchored parameters of one network (Kirkpatrick et
        al., 2017, eq. 3).

        :param name: The network's name.
        :param network: The network.
        :return: The penalty (differentiable w.r.t. the network's parameters), or None where the network is not
            regularised or nothing has been consolidated yet.
        """
        if name not in self:
            return None
        ewc = self[name]
        if int(ewc.n_consolidations) == 0:
            return None
        return ewc.penalty(network)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """
        ``nn.Module.load_state_dict``; also reads the EWC state of BayesianDQN models saved before both algorithms shared
        this class: a single network's state without the network's name in front of its keys.
        """
        names = list(self.keys())
        if len(names) == 1 and state_dict and not any(key.startswith(f"{names[0]}.") for key in state_dict):
            state_dict = {f"{names[0]}.{key}": value for key, value in state_dict.items()}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


class ConsolidationMixin(OffPolicyAlgorithm):
    """
    ``consolidate()``, its penalty and its saving for an off-policy algorithm with Bayes-by-backprop networks (see the
    module's documentation). List it before the SB3 algorithm in the bases
    (``class BayesianDQN(ExactResumeMixin, ConsolidationMixin, PlaceholderReplayBufferMixin, DQN)``).

    The algorithm names its networks in ``consolidated_networks``, stores the arguments with
    :meth:`_set_consolidation_arguments` in its constructor, checks them with
    :meth:`_check_consolidation_hyperparameters` in its ``_check_hyperparameters``, calls :meth:`_setup_consolidation`
    once its networks exist, adds :meth:`_consolidation_penalty` to each network's loss and implements
    :meth:`_ewc_fisher`.
    """

    #: Attribute names of the networks ``consolidate()`` protects (EWC's Fisher and anchors, VCL's prior).
    consolidated_networks: ClassVar[tuple[str, ...]] = ()
    consolidation: str
    ewc_lambda: float
    ewc_online: bool
    ewc_decay: float
    ewc_modules: tuple[str, ...]
    #: EWC's Fisher and anchors (``consolidation="ewc"``), saved under ``"ewc"``; None otherwise.
    ewc: EWCState | None = None
    #: Consolidations so far (EWC or VCL). Models saved before BayesianDDPG counted them load with 0.
    n_consolidations: int = 0
    #: Environment step at which the prior of the Bayesian layers was last set: 0, or the last VCL consolidation.
    _prior_timesteps: int = 0

    def _set_consolidation_arguments(
        self,
        consolidation: str,
        ewc_lambda: float,
        ewc_online: bool,
        ewc_decay: float,
        ewc_modules: str | Sequence[str],
    ) -> None:
        """
        Store the constructor's consolidation arguments (checked by :meth:`_check_consolidation_hyperparameters`).

        :param consolidation: ``"none"``, ``"ewc"`` or ``"vcl"``.
        :param ewc_lambda: Weight of the EWC penalty.
        :param ewc_online: Online EWC (Schwarz et al., 2018) instead of the sum over tasks.
        :param ewc_decay: Decay of the old Fisher in online EWC.
        :param ewc_modules: Modules whose parameters EWC anchors, by attribute path.
        """
        self.consolidation = consolidation
        self.ewc_lambda = ewc_lambda
        self.ewc_online = ewc_online
        self.ewc_decay = ewc_decay
        self.ewc_modules = ewc_modules  # type: ignore[assignment]  # normalised to a tuple by the check
        self.n_consolidations = 0
        self._prior_timesteps = 0

    def _check_consolidation_hyperparameters(self, check: ParameterValidator, vcl_allowed: bool, vcl_needs: str) -> None:
        """
        Check the consolidation arguments (at construction and at ``load``), and normalise ``ewc_modules`` to a tuple.

        :param check: The algorithm's validator.
        :param vcl_allowed: Whether the networks will have Bayes-by-backprop layers, whose prior VCL replaces.
        :param vcl_needs: What VCL needs, in words, for the message where it is not allowed.
        """
        check.choice("consolidation", self.consolidation, CONSOLIDATIONS)
        check.relation("consolidation", self.consolidation, self.consolidation != "vcl" or vcl_allowed, vcl_needs)
        self.ewc_lambda = check.non_negative("ewc_lambda", self.ewc_lambda)
        self.ewc_online = check.boolean("ewc_online", self.ewc_online)
        self.ewc_decay = check.fraction("ewc_decay", self.ewc_decay, zero=True)
        modules: Any = self.ewc_modules
        modules = (modules,) if isinstance(modules, str) else modules
        allowed = (
            f"a non-empty list of modules of the networks {', '.join(map(repr, self.consolidated_networks))}, by "
            f"attribute path (a network, or a part of one such as '{self.consolidated_networks[0]}.<submodule>')"
        )
        check.of_type(
            "ewc_modules",
            self.ewc_modules,
            isinstance(modules, Sequence) and all(isinstance(m, str) for m in modules),
            allowed,
        )
        check.relation(
            "ewc_modules",
            self.ewc_modules,
            len(modules) > 0 and all(m.partition(".")[0] in self.consolidated_networks for m in modules),
            allowed,
        )
        self.ewc_modules = tuple(modules)

    def _setup_consolidation(self) -> None:
        """Build the EWC state (``consolidation="ewc"``) of the networks just built: empty Fisher, no anchor yet."""
        self.ewc = None
        if self.consolidation != "ewc":
            return
        check = ParameterValidator(type(self).__name__)
        selected: dict[str, set[str]] = {}
        for path in self.ewc_modules:
            network_name, _, submodule = path.partition(".")
            network = getattr(self, network_name)
            try:
                module = network.get_submodule(submodule)
            except AttributeError:
                module = None
            check.relation("ewc_modules", self.ewc_modules, module is not None, f"modules that exist: {path!r} does not")
            assert module is not None
            names = ewc_parameter_names(module, prefix=submodule)
            check.relation(
                "ewc_modules", self.ewc_modules, bool(names), f"modules with trainable parameters: {path!r} has none"
            )
            selected.setdefault(network_name, set()).update(names)
        networks = {}
        for network_name in self.consolidated_networks:
            if network_name in selected:
                network = getattr(self, network_name)
                # The network's own order, so that the saved state has the same keys for the same selection.
                networks[network_name] = (network, [n for n in ewc_parameter_names(network) if n in selected[network_name]])
        self.ewc = EWCState(networks, self.ewc_lambda, online=self.ewc_online, decay=self.ewc_decay).to(self.device)

    def _consolidation_penalty(self, network: str) -> th.Tensor | None:
        """
        :param network: A network's attribute name.
        :return: Its EWC penalty, or None (no EWC, network not regularised, or nothing consolidated yet).
        """
        return None if self.ewc is None else self.ewc.penalty(network, getattr(self, network))

    def _consolidated_step(
        self,
        network: str,
        optimizer: th.optim.Optimizer,
        loss: th.Tensor,
        what: str,
        max_grad_norm: float | None = None,
    ) -> tuple[float, float | None]:
        """
        One update of a network: its consolidation penalty (if any) added to the loss, then :func:`checked_step` (a NaN
        or inf loss or gradient raises before the step, so the weights stay those of the last finite update).

        :param network: The network's attribute name.
        :param optimizer: Its optimiser.
        :param loss: The loss without the penalty.
        :param what: The loss's name in error messages.
        :param max_grad_norm: Clip the gradients' global norm to this (None: no clipping).
        :return: The total loss and the penalty (None when there is none), as floats for logging.
        """
        penalty = self._consolidation_penalty(network)
        if penalty is not None:
            loss = loss + penalty
        checked_step(optimizer, loss, what, max_grad_norm=max_grad_norm)
        return loss.item(), None if penalty is None else penalty.item()

    def _ewc_fisher(self, network: str, parameter_names: list[str], samples: ReplaySamples) -> dict[str, th.Tensor]:
        """
        The diagonal Fisher of one network, as the mean over a chunk of replayed transitions (implemented by the
        algorithm, whose likelihood it is).

        :param network: The network's attribute name.
        :param parameter_names: Its parameters to estimate the Fisher of.
        :param samples: Transitions of the replay buffer (at most ``RECENT_CHUNK_ROWS``).
        :return: Parameter name -> Fisher diagonal.
        """
        raise NotImplementedError

    def _recent_replay_samples(self, n_transitions: int) -> Iterator[ReplaySamples]:
        """
        The most recent ``n_transitions`` vectorised steps of the replay buffer, newest first, one transition each (from
        an environment drawn at random when ``n_envs > 1``, as SB3's buffers draw it; exactly the most recent
        transitions with one environment), in chunks of ``RECENT_CHUNK_ROWS`` rows.

        :param n_transitions: Number of transitions (fewer where the buffer holds fewer).
        :return: Iterator over chunks.
        """
        buffer = self.replay_buffer
        assert buffer is not None
        n_stored = buffer.buffer_size if buffer.full else buffer.pos
        if buffer.full and getattr(buffer, "optimize_memory_usage", False):
            n_stored -= 1  # the oldest row's observation was overwritten by the newest next observation
        n_rows = min(n_stored, n_transitions)
        rows = (buffer.pos - 1 - np.arange(n_rows)) % buffer.buffer_size
        for start in range(0, n_rows, RECENT_CHUNK_ROWS):
            yield buffer._get_samples(rows[start : start + RECENT_CHUNK_ROWS], env=self._vec_normalize_env)

    def consolidate(self, n_samples: int = 10_000) -> None:
        """
        Protect what was learned on the task that just ended (call it at each task switch, before ``set_env``).

        - ``"ewc"``: estimate the diagonal Fisher of every regularised network on the most recent ``n_samples``
          transitions of the replay buffer (the task just learned), anchor the current parameters, and add the Fisher
          to the running total, or to the decayed one with ``ewc_online`` (Kirkpatrick et al., 2017, eq. 3; Schwarz et
          al., 2018, eq. 8).
        - ``"vcl"``: the current posterior of every Bayes-by-backprop layer of the networks becomes its prior (Nguyen
          et al., 2018, eq. 4); the KL's data count restarts (the data so far are in the new prior).
        - ``"none"``: nothing.

        :param n_samples: Number of transitions the Fisher is estimated on.
        """
        owner = type(self).__name__
        n_samples = ParameterValidator(f"{owner}.consolidate").integer("n_samples", n_samples)
        if self.consolidation == "none":
            return
        if self.consolidation == "vcl":
            for name in self.consolidated_networks:
                posterior_to_prior(getattr(self, name))
            self._prior_timesteps = self.num_timesteps
        else:
            assert self.ewc is not None
            if self.replay_buffer is None or self.replay_buffer.size() == 0:
                raise ValueError(
                    f"{owner}.consolidate() needs the transitions of the task just learned in the replay buffer: "
                    "call it after learn() (or load_replay_buffer())."
                )
            for name, fisher in self._estimate_fisher(n_samples).items():
                self.ewc[name].consolidate(getattr(self, name), fisher)
        self.n_consolidations += 1
        if getattr(self, "_logger", None) is not None:
            self.logger.record("train/n_consolidations", self.n_consolidations)

    def _estimate_fisher(self, n_samples: int) -> dict[str, dict[str, th.Tensor]]:
        """
        The Fisher of every regularised network on the most recent ``n_samples`` transitions: the mean over chunks of
        chunk means, weighted by the chunk sizes (the mean over all the transitions), at the posterior-mean weights.

        :param n_samples: Number of transitions.
        :return: Network name -> parameter name -> Fisher diagonal.
        """
        assert self.ewc is not None
        self.policy.set_training_mode(False)
        totals: dict[str, dict[str, th.Tensor]] = {name: {} for name in self.ewc.keys()}
        n_total = 0
        for samples in self._recent_replay_samples(n_samples):
            n_chunk = int(samples.rewards.shape[0])
            for name, ewc in self.ewc.networks():
                for key, value in self._ewc_fisher(name, ewc.parameter_names, samples).items():
                    totals[name][key] = totals[name][key] + n_chunk * value if key in totals[name] else n_chunk * value
            n_total += n_chunk
        return {name: {key: value / n_total for key, value in fisher.items()} for name, fisher in totals.items()}

    def _excluded_save_params(self) -> list[str]:
        # The EWC state is a torch state dict ("ewc"), not a pickled attribute.
        return [*super()._excluded_save_params(), "ewc"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, tensors = super()._get_torch_save_params()
        if self.ewc is not None:
            state_dicts = [*state_dicts, "ewc"]  # Fisher, anchors and the consolidation count of each network
        return state_dicts, tensors

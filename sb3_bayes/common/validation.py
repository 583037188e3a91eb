"""
Construction-time checks of hyperparameters, shared by every algorithm and policy of sb3-bayes.

Every constructor argument (and every ``policy_kwargs`` entry, checked by the policy's constructor) goes through one
:class:`ParameterValidator`, so that a bad value fails when the model is built, before any environment step, with an
error that names the parameter, the value given and what is allowed::

    check = ParameterValidator("PETS")
    check.integer("popsize", popsize)                          # int >= 1, no bool, no float
    check.real("cem_alpha", cem_alpha, low=0.0, high=1.0, high_open=True)
    check.choice("planner", planner, ("cem", "random"))
    check.relation("num_elites", num_elites, num_elites <= popsize, f"at most popsize ({popsize})")

Type errors raise :class:`HyperparameterTypeError` (a ``TypeError``), range and relation errors raise
:class:`HyperparameterValueError` (a ``ValueError``); both derive from :class:`HyperparameterError`, which lets
callers such as the rl-zoo3 plugin tell an invalid setting apart from a failure during training.
"""

import math
import numbers
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any


class HyperparameterError(Exception):
    """
    A constructor argument or ``policy_kwargs`` entry that is not allowed.

    :param message: The message, naming the parameter, the value given and what is allowed.
    :param parameter: The parameter's name (the rl-zoo3 plugin uses it to tell a sampled value from a fixed one).
    """

    def __init__(self, message: str, parameter: str) -> None:
        super().__init__(message)
        self.parameter = parameter


class HyperparameterValueError(HyperparameterError, ValueError):
    """A hyperparameter of the right type but outside its allowed range, or in conflict with another one."""


class HyperparameterTypeError(HyperparameterError, TypeError):
    """A hyperparameter of the wrong type (a string for a number, a bool for an integer, ...)."""


def _is_integer(value: Any) -> bool:
    # bool is an Integral in Python, but ``popsize=True`` is a mistake, never a count.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


class ParameterValidator:
    """
    Checks hyperparameters of one owner (an algorithm or a policy) and raises errors that name them.

    Every method returns the value it checked (integers as ``int``, reals as ``float``), so a check can also normalise
    a NumPy scalar that came from a YAML file or a sampler.

    :param owner: The class the parameters belong to, for the messages (``"PETS"``, ``"PSDRLPolicy"``, ...).
    """

    def __init__(self, owner: str) -> None:
        self.owner = owner

    def _value_error(self, name: str, value: Any, allowed: str) -> HyperparameterValueError:
        return HyperparameterValueError(f"{self.owner}: {name} must be {allowed}, got {value!r}.", name)

    def _type_error(self, name: str, value: Any, allowed: str) -> HyperparameterTypeError:
        return HyperparameterTypeError(
            f"{self.owner}: {name} must be {allowed}, got {value!r} ({type(value).__name__}).", name
        )

    def integer(self, name: str, value: Any, minimum: int | None = 1, maximum: int | None = None) -> int:
        """
        An integer in ``[minimum, maximum]`` (bounds optional).

        :param name: Parameter name.
        :param value: The value given.
        :param minimum: Smallest allowed value (None: no lower bound).
        :param maximum: Largest allowed value (None: no upper bound).
        :return: The value as ``int``.
        """
        bounds = _interval(minimum, maximum, False, False)
        allowed = f"an integer {bounds}" if bounds else "an integer"
        if not _is_integer(value):
            raise self._type_error(name, value, allowed)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise self._value_error(name, value, allowed)
        return int(value)

    def real(
        self,
        name: str,
        value: Any,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        high_open: bool = False,
    ) -> float:
        """
        A finite real number in an interval (integers are accepted).

        :param name: Parameter name.
        :param value: The value given.
        :param low: Lower bound (None: none).
        :param high: Upper bound (None: none).
        :param low_open: Whether ``low`` itself is excluded.
        :param high_open: Whether ``high`` itself is excluded.
        :return: The value as ``float``.
        """
        bounds = _interval(low, high, low_open, high_open)
        allowed = f"a finite number {bounds}" if bounds else "a finite number"
        if not _is_real(value):
            raise self._type_error(name, value, allowed)
        number = float(value)
        too_low = low is not None and (number <= low if low_open else number < low)
        too_high = high is not None and (number >= high if high_open else number > high)
        if not math.isfinite(number) or too_low or too_high:
            raise self._value_error(name, value, allowed)
        return number

    def positive(self, name: str, value: Any) -> float:
        """
        A finite number > 0 (a learning rate, a scale, a precision).

        :param name: Parameter name.
        :param value: The value given.
        :return: The value as ``float``.
        """
        return self.real(name, value, low=0.0, low_open=True)

    def non_negative(self, name: str, value: Any) -> float:
        """
        A finite number >= 0 (a coefficient that may switch a term off).

        :param name: Parameter name.
        :param value: The value given.
        :return: The value as ``float``.
        """
        return self.real(name, value, low=0.0)

    def fraction(self, name: str, value: Any, zero: bool = False, one: bool = True) -> float:
        """
        A number in the unit interval: ``(0, 1]`` by default (a discount factor, a soft-update rate).

        :param name: Parameter name.
        :param value: The value given.
        :param zero: Whether 0 is allowed.
        :param one: Whether 1 is allowed.
        :return: The value as ``float``.
        """
        return self.real(name, value, low=0.0, high=1.0, low_open=not zero, high_open=not one)

    def boolean(self, name: str, value: Any) -> bool:
        """
        A ``bool`` (NumPy's included).

        :param name: Parameter name.
        :param value: The value given.
        :return: The value as ``bool``.
        """
        if not isinstance(value, bool) and type(value).__name__ != "bool_":
            raise self._type_error(name, value, "True or False")
        return bool(value)

    def choice(self, name: str, value: Any, choices: Iterable[Any]) -> Any:
        """
        One of a fixed set of values.

        :param name: Parameter name.
        :param value: The value given.
        :param choices: The allowed values.
        :return: The value.
        """
        options = tuple(choices)
        try:
            allowed = value in options
        except TypeError:  # an unhashable or uncomparable value
            allowed = False
        if not allowed:
            raise self._value_error(name, value, "one of " + ", ".join(repr(option) for option in options))
        return value

    def learning_rate(self, name: str, value: Any) -> float | Callable[[float], float]:
        """
        A learning rate: a number >= 0 or a schedule (a callable of the remaining progress, as in SB3). Zero is allowed
        because ``rl_zoo3.enjoy`` loads models with ``learning_rate=0.0`` (a frozen model).

        :param name: Parameter name.
        :param value: The value given.
        :return: The value (a ``float`` where a number was given).
        """
        if callable(value):
            return value
        if not _is_real(value):
            raise self._type_error(name, value, "a finite number >= 0 or a schedule (a callable)")
        return self.non_negative(name, value)

    def sizes(self, name: str, value: Any, allow_empty: bool = True) -> list[int]:
        """
        A list of layer widths, each an integer >= 1 (``net_arch``).

        :param name: Parameter name.
        :param value: The value given.
        :param allow_empty: Whether an empty list (no hidden layer) is allowed.
        :return: The widths as a list of ``int``.
        """
        allowed = "a list of integers >= 1" + ("" if allow_empty else " with at least one entry")
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise self._type_error(name, value, allowed)
        if not all(_is_integer(width) for width in value):
            raise self._type_error(name, value, allowed)
        if any(width < 1 for width in value) or (not value and not allow_empty):
            raise self._value_error(name, value, allowed)
        return [int(width) for width in value]

    def of_type(self, name: str, value: Any, holds: bool, allowed: str) -> None:
        """
        A type condition that no other method covers (a callable, a tuple of names, ...).

        :param name: Parameter name.
        :param value: The value given.
        :param holds: Whether the value has the right type.
        :param allowed: What is allowed, in words.
        """
        if not holds:
            raise self._type_error(name, value, allowed)

    def subclass(self, name: str, value: Any, base: type) -> type:
        """
        A class that must derive from ``base`` (``activation_fn``, ``optimizer_class``, ``features_extractor_class``).

        :param name: Parameter name.
        :param value: The value given.
        :param base: The required base class.
        :return: The class.
        """
        self.of_type(name, value, isinstance(value, type) and issubclass(value, base), f"a subclass of {base.__name__}")
        return value

    def keyword_arguments(self, name: str, value: Any) -> dict[str, Any] | None:
        """
        A dict of keyword arguments with string keys, or None (``optimizer_kwargs``, ``features_extractor_kwargs``).

        :param name: Parameter name.
        :param value: The value given.
        :return: The dict (or None).
        """
        holds = value is None or (isinstance(value, dict) and all(isinstance(key, str) for key in value))
        self.of_type(name, value, holds, "a dict of keyword arguments or None")
        return value

    def relation(self, name: str, value: Any, holds: bool, allowed: str) -> None:
        """
        A condition that ties a parameter to another one (``num_elites <= popsize``, ...).

        :param name: The parameter to blame.
        :param value: Its value.
        :param holds: Whether the condition holds.
        :param allowed: What is allowed, in words naming the other parameter (``"at most popsize (400)"``).
        """
        if not holds:
            raise self._value_error(name, value, allowed)

    def base_algorithm_arguments(self, model: Any) -> None:
        """
        The arguments every SB3 ``BaseAlgorithm`` takes and SB3 itself does not check: ``stats_window_size``,
        ``tensorboard_log``, ``policy_kwargs``, ``verbose`` and ``seed`` (NumPy's seeds are 32-bit). Integers are
        normalised in place (a NumPy integer from a sampler becomes an ``int``).

        :param model: The algorithm, after ``BaseAlgorithm.__init__`` has stored the arguments.
        """
        model._stats_window_size = self.integer("stats_window_size", model._stats_window_size)
        folder = model.tensorboard_log is None or isinstance(model.tensorboard_log, (str, os.PathLike))
        self.of_type("tensorboard_log", model.tensorboard_log, folder, "a folder path or None")
        self.keyword_arguments("policy_kwargs", model.policy_kwargs)
        model.verbose = self.integer("verbose", model.verbose, minimum=0)
        model.seed = self.optional(self.integer, "seed", model.seed, minimum=0, maximum=2**32 - 1)

    def optional(self, check: Callable[..., Any], name: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        """
        Run ``check`` unless ``value`` is None.

        :param check: One of this validator's methods.
        :param name: Parameter name.
        :param value: The value given (None passes).
        :return: None, or what ``check`` returns.
        """
        return None if value is None else check(name, value, *args, **kwargs)

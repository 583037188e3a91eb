"""How the rl-zoo3 plugin reports that it could not register itself, and how it is switched off.

Stdlib only: imported at every interpreter start-up by :mod:`zoo_plugins.hook`, and by :mod:`zoo_plugins.patches`
(so that the two never import each other).
"""

from __future__ import annotations

import os

#: Environment variable that switches the plugin off (0/false/no/off). ``sb3_bayes_zoo.pth`` tests it itself, before
#: importing anything of this package.
ENV_VAR = "SB3_BAYES_ZOO_PLUGIN"
#: Values of :data:`ENV_VAR` that switch the plugin off (the ``.pth`` line spells the same tuple).
OFF_VALUES = ("0", "false", "no", "off")

#: Messages already warned about (one warning per distinct failure).
_warned: set[str] = set()


class ZooPluginWarning(RuntimeWarning):
    """The sb3-bayes rl-zoo3 plugin could not (fully) register itself; rl-zoo3 keeps working without it."""


def enabled() -> bool:
    """False when ``SB3_BAYES_ZOO_PLUGIN`` is set to 0/false/no/off."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in OFF_VALUES


def warn_failure(what: str, exc: BaseException | str) -> None:
    """Emit one :class:`ZooPluginWarning` per distinct failure; never raises."""
    try:
        import warnings

        detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        message = (
            f"sb3-bayes rl-zoo3 plugin: {what} failed ({detail}). rl-zoo3's own algorithms are unaffected; "
            f"set {ENV_VAR}=0 to switch the plugin off."
        )
        if message in _warned:
            return
        _warned.add(message)
        warnings.warn(message, ZooPluginWarning, stacklevel=3)
    except Exception:  # pragma: no cover - warnings turned into errors by a filter, or worse
        pass

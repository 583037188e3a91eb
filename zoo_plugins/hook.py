"""Start-up hook that plugs sb3-bayes into the unmodified rl-zoo3 commands.

``sb3_bayes_zoo.pth`` (and, for Python >= 3.15, ``sb3_bayes_zoo.start``, PEP 829) call :func:`install` at every
interpreter start-up, so this module is stdlib-only and does almost nothing until rl-zoo3 is imported:

- :func:`install` puts a finder on ``sys.meta_path`` that reacts only to ``rl_zoo3.utils``, ``rl_zoo3.hyperparams_opt``
  and ``rl_zoo3.exp_manager``. After such a module has executed, :mod:`zoo_plugins.patches` registers our algorithms in
  ``ALGOS``, our samplers/converters in ``HYPERPARAMS_SAMPLER``/``HYPERPARAMS_CONVERTER`` (in place, never rebinding) and
  wraps ``ExperimentManager`` so that our default YAML is used when no ``-conf`` is given.
- If those modules are already imported, they are patched at once.
- Idempotent (a ``.pth`` may run twice), never raises (a failure becomes one :class:`ZooPluginWarning` and rl-zoo3 keeps
  working), and switched off by ``SB3_BAYES_ZOO_PLUGIN=0`` (which the ``.pth`` line tests before importing this module).

Never import rl_zoo3 (or torch, sb3_bayes) at module level here: the finder fires while ``rl_zoo3/__init__`` is still
executing.
"""

from __future__ import annotations

import sys

from zoo_plugins.failures import ENV_VAR, ZooPluginWarning, enabled, warn_failure

__all__ = ["ENV_VAR", "TARGETS", "ZooPluginWarning", "enabled", "install", "patch_module", "uninstall", "warn_failure"]

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at start-up
    from typing import Any

#: rl-zoo3 modules whose execution triggers a patch.
TARGETS = ("rl_zoo3.utils", "rl_zoo3.hyperparams_opt", "rl_zoo3.exp_manager")
_FINDER_MARK = "_sb3_bayes_zoo_finder"


class _PatchingLoader:
    """Delegates to the real loader; once the module has executed, patches it."""

    def __init__(self, loader: Any, fullname: str) -> None:
        self._loader = loader
        self._fullname = fullname

    def create_module(self, spec: Any) -> Any:
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: Any) -> None:
        # Let introspection (linecache, inspect, reload) see the real loader.
        try:
            module.__loader__ = self._loader
            if getattr(module, "__spec__", None) is not None:
                module.__spec__.loader = self._loader
        except Exception:  # pragma: no cover - read-only module attributes
            pass
        self._loader.exec_module(module)
        patch_module(self._fullname, module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _ZooFinder:
    """``sys.meta_path`` finder reacting only to :data:`TARGETS`; finds the real spec and wraps its loader."""

    _sb3_bayes_zoo_finder = True

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in TARGETS:
            return None
        try:
            if not enabled():
                return None
            for finder in list(sys.meta_path):
                if getattr(finder, _FINDER_MARK, False):
                    continue
                find_spec = getattr(finder, "find_spec", None)
                if find_spec is None:
                    continue
                spec = find_spec(fullname, path, target)
                if spec is not None:
                    if spec.loader is None or not hasattr(spec.loader, "exec_module"):
                        return None
                    spec.loader = _PatchingLoader(spec.loader, fullname)
                    return spec
        except Exception as exc:
            warn_failure(f"finding {fullname}", exc)
        return None

    def invalidate_caches(self) -> None:
        pass


def patch_module(fullname: str, module: Any) -> None:
    """Apply the patch for one rl-zoo3 module; never raises."""
    if not enabled():
        return
    try:
        # Imported only once rl-zoo3 runs; patches never imports this module (no import circle).
        from zoo_plugins import patches

        patches.PATCHERS[fullname](module)
    except Exception as exc:
        warn_failure(f"patching {fullname}", exc)


def _is_initializing(module: Any) -> bool:
    return bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def install() -> bool:
    """Install the finder (once) and patch the rl-zoo3 modules already imported. Returns whether the hook is active."""
    try:
        if not enabled():
            return False
        if not any(getattr(finder, _FINDER_MARK, False) for finder in sys.meta_path):
            sys.meta_path.insert(0, _ZooFinder())
        for fullname in TARGETS:
            module = sys.modules.get(fullname)
            if module is not None and not _is_initializing(module):
                patch_module(fullname, module)
        return True
    except Exception as exc:  # pragma: no cover - defensive: a .pth must never break start-up
        warn_failure("installing the import hook", exc)
        return False


def uninstall() -> None:
    """Remove the finder (patches already applied stay). For tests."""
    sys.meta_path[:] = [finder for finder in sys.meta_path if not getattr(finder, _FINDER_MARK, False)]

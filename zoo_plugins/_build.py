"""setuptools ``build_py`` that ships the rl-zoo3 start-up hook and the default YAMLs.

Used only at build time (``setup.cfg``: ``cmdclass = build_py = zoo_plugins._build.BuildPy``).

- ``sb3_bayes_zoo.pth`` / ``sb3_bayes_zoo.start`` (repository root) must land at the top of site-packages. A regular build
  copies them into ``build_lib`` (whose whole tree becomes the wheel). In editable mode (PEP 660) setuptools' ``build_py``
  does nothing and ``build_lib`` is a throw-away folder, so they are copied into the ``install`` command's
  ``install_lib``, which ``editable_wheel`` points at the unpacked wheel. Without that branch the ``.pth`` silently goes
  missing after ``pip install -e .``.
- ``hyperparams/*.yml`` (repository root) are copied into ``sb3_bayes/hyperparams/`` of ``build_lib``, so regular installs
  carry them as package data; editable installs read them from the checkout (see ``zoo_plugins.registry.find_yaml``).
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools.command.build_py import build_py as _build_py

#: Files at the repository root that go to the top of site-packages.
HOOK_FILES = ("sb3_bayes_zoo.pth", "sb3_bayes_zoo.start")
#: Top-level folder of rl-zoo3 YAMLs, and the package folder it is shipped as.
HYPERPARAMS_DIR = "hyperparams"
HYPERPARAMS_PACKAGE_DIR = os.path.join("sb3_bayes", "hyperparams")


def project_root() -> Path:
    """The folder holding ``setup.cfg`` (this file's parent's parent, else the current directory)."""
    here = Path(__file__).resolve().parents[1]
    if (here / "setup.cfg").is_file():
        return here
    return Path.cwd()


class BuildPy(_build_py):
    """``build_py`` that also installs the rl-zoo3 hook files and ships ``hyperparams/*.yml`` as package data."""

    def run(self) -> None:
        super().run()
        root = project_root()
        if self.editable_mode:
            install_lib = self.get_finalized_command("install").install_lib
            if install_lib is None:  # pragma: no cover - setuptools always sets it for editable_wheel
                raise RuntimeError("editable build: the install command has no install_lib")
            self._copy_hook_files(root, Path(install_lib))
        else:
            self._copy_hook_files(root, Path(self.build_lib))
            self._copy_hyperparams(root, Path(self.build_lib))

    def _copy_hook_files(self, root: Path, dest_dir: Path) -> None:
        dest_dir.mkdir(parents=True, exist_ok=True)
        for name in HOOK_FILES:
            src = root / name
            if not src.is_file():
                raise FileNotFoundError(f"sb3-bayes build: {src} is missing (needed for the rl-zoo3 hook)")
            self.copy_file(str(src), str(dest_dir / name), preserve_mode=False)

    def _copy_hyperparams(self, root: Path, build_lib: Path) -> None:
        src_dir = root / HYPERPARAMS_DIR
        if not src_dir.is_dir():
            return
        dest_dir = build_lib / HYPERPARAMS_PACKAGE_DIR
        dest_dir.mkdir(parents=True, exist_ok=True)
        for src in sorted(src_dir.glob("*.yml")):
            self.copy_file(str(src), str(dest_dir / src.name), preserve_mode=False)

    def _extra_outputs(self) -> list[str]:
        build_lib = Path(self.build_lib)
        outputs = [str(build_lib / name) for name in HOOK_FILES]
        src_dir = project_root() / HYPERPARAMS_DIR
        if src_dir.is_dir():
            outputs += [str(build_lib / HYPERPARAMS_PACKAGE_DIR / src.name) for src in sorted(src_dir.glob("*.yml"))]
        return outputs

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:  # type: ignore[override]
        outputs = list(super().get_outputs(include_bytecode))
        if not self.editable_mode:
            outputs += [path for path in self._extra_outputs() if path not in outputs]
        return outputs

"""rl-zoo3 integration of sb3-bayes.

rl-zoo3 2.9.2 has no plugin mechanism, so ``sb3_bayes_zoo.pth`` (installed at the top of site-packages) calls
:func:`zoo_plugins.hook.install` at interpreter start-up. The hook waits until rl-zoo3 itself is imported, then registers
the algorithms of :mod:`zoo_plugins.registry` with rl-zoo3 (``ALGOS``, the Optuna samplers, the default YAML).

This package's ``__init__`` and :mod:`zoo_plugins.hook` run at every interpreter start-up: keep them stdlib-only and cheap.
Set ``SB3_BAYES_ZOO_PLUGIN=0`` to switch the hook off.
"""

"""
One run of the library's continual-learning command, ``python -m sb3_bayes.continual``, recorded in the result schema
(``benchmarks/README.md``); the forgetting runs of ``bayes_ddpg`` and ``bayes_dqn`` use it.

    python -m benchmarks.continual BENCHMARK [arguments of python -m sb3_bayes.continual, with --out and --name]

Runs the command in this process with exactly these arguments (it writes ``<out>/<name>.csv``, ``.png`` and
``.json``), then rewrites ``<out>/<name>.json`` as a result: the command's summary under ``results``, the arguments
given under ``config``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from benchmarks.common import Timer, result_record, write_result


def given_options(argv: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """The options named in ``argv`` with their parsed values (``--hyperparams`` decoded from JSON)."""
    keys = [token[2:].replace("-", "_") for token in argv if token.startswith("--")]
    options = {key: getattr(args, key) for key in keys}
    if "hyperparams" in options:
        options["hyperparams"] = json.loads(options["hyperparams"])
    return options


def record(benchmark: str, argv: list[str], summary: dict[str, Any], command: str | None = "") -> dict[str, Any]:
    """The result of a run of ``python -m sb3_bayes.continual argv`` whose summary (its JSON) is ``summary``."""
    from sb3_bayes.continual.__main__ import parse_args

    args = parse_args(argv)
    return result_record(
        benchmark=benchmark,
        experiment="continual",
        algorithm=args.algo,
        env=" ".join(args.tasks) if args.tasks else args.sequence,
        seed=args.seed,
        command=command,
        config=given_options(argv, args),
        results={k: v for k, v in summary.items() if k != "command"},
        cpu_seconds=sum(summary["cpu_time_s"]),
        wall_seconds=sum(summary["wall_time_s"]),
    )


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        raise SystemExit(__doc__)
    benchmark, argv = sys.argv[1], sys.argv[2:]
    from sb3_bayes.continual.__main__ import main as continual
    from sb3_bayes.continual.__main__ import parse_args

    args = parse_args(argv)
    if args.name is None:
        raise SystemExit("give --name: it names the result file")
    with Timer() as timer:
        summary = continual(argv)
    print(f"{benchmark}: {args.name} took {timer.cpu_seconds:.0f} CPU s", flush=True)
    write_result(os.path.join(args.out, f"{args.name}.json"), record(benchmark, argv, summary))


if __name__ == "__main__":
    main()

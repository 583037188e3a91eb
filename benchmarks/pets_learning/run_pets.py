"""One PETS learning run with the settings of hyperparams/pets.yml for the env; per-episode returns to JSON.

    python -m benchmarks.pets_learning.run_pets --env Pendulum-v1 --seed 0 --steps 1000 \
        --out benchmarks/pets_learning/results/pets_Pendulum-v1_s0.json

`--set key=value` overrides one YAML entry (Python literal; for the investigation runs only).
"""

from __future__ import annotations

import ast
import time

from stable_baselines3.common.logger import KVWriter, Logger

from benchmarks.common import eval_policy_kwargs, hyperparams_path, load_zoo_section, repo_path
from benchmarks.pets_learning.runs import learn_and_write, run_arguments, run_settings
from sb3_bayes import PETS


class CaptureWriter(KVWriter):
    """Keep what PETS logs after each training round (model loss, state MSE on all data, log-variance bounds)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def write(self, key_values, key_excluded, step=0) -> None:
        self.rows.append({k: (float(v) if isinstance(v, (int, float)) else str(v)) for k, v in key_values.items()})

    def close(self) -> None:
        pass


def main() -> None:
    p = run_arguments()
    p.add_argument("--yaml", default=hyperparams_path("pets.yml"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()

    section, hp = load_zoo_section(args.yaml, args.env, "default", evaluate=False)
    yaml_raw = dict(hp)
    for kv in args.set:
        k, v = kv.split("=", 1)
        try:
            hp[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            hp[k] = v
    steps, policy, env_kwargs = run_settings(hp, args.steps)
    eval_policy_kwargs(hp)
    writer = CaptureWriter()
    train_times: list[float] = []

    def make_model(env):
        model = PETS(policy, env, seed=args.seed, verbose=0, **hp)
        model.set_logger(Logger(folder=None, output_formats=[writer]))
        orig_train = model.train

        def timed_train() -> None:  # the training rounds, timed apart from planning
            t = time.perf_counter()
            orig_train()
            train_times.append(time.perf_counter() - t)

        model.train = timed_train  # type: ignore[method-assign]
        return model

    config = dict(yaml=repo_path(args.yaml), yaml_section=section, yaml_entry=yaml_raw, overrides=args.set)
    learn_and_write(
        make_model,
        args,
        "PETS",
        steps,
        env_kwargs,
        config,
        results=lambda: dict(train_rounds=writer.rows, train_wall_s=[round(t, 3) for t in train_times]),
    )


if __name__ == "__main__":
    main()

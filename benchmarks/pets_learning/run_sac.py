"""One SB3 SAC run with rl-zoo3's tuned hyperparameters for the env (SAC defaults where it has none).

python -m benchmarks.pets_learning.run_sac --env Pendulum-v1 --seed 0 --steps 20000 \
    --out benchmarks/pets_learning/results/sac_Pendulum-v1_s0.json
"""

from __future__ import annotations

from rl_zoo3.utils import linear_schedule
from stable_baselines3 import SAC

from benchmarks.common import eval_policy_kwargs, load_zoo_section, zoo_hyperparams_path
from benchmarks.pets_learning.runs import learn_and_write, run_arguments, run_settings


def main() -> None:
    args = run_arguments().parse_args()
    sac_yml, sac_yml_name = zoo_hyperparams_path("sac")
    # InvertedPendulum-v5: fall back to the -v4 entry if rl-zoo3 has one, else SAC's own defaults.
    fallback = args.env.replace("-v5", "-v4") if args.env.endswith("-v5") else None
    section, hp = load_zoo_section(sac_yml, args.env, fallback, evaluate=False)
    yaml_raw = {k: str(v) for k, v in hp.items()}
    steps, policy, env_kwargs = run_settings(hp, args.steps, default_steps=3000)
    for key in ("learning_rate",):
        if isinstance(hp.get(key), str) and hp[key].startswith("lin_"):
            hp[key] = linear_schedule(float(hp[key][4:]))
    unsupported = [k for k in ("normalize", "env_wrapper", "callback", "frame_stack", "n_envs") if k in hp]
    assert not unsupported, f"not handled here: {unsupported}"
    eval_policy_kwargs(hp)
    config = dict(yaml=sac_yml_name, yaml_section=section, yaml_entry=yaml_raw)
    learn_and_write(lambda env: SAC(policy, env, seed=args.seed, verbose=0, **hp), args, "SAC", steps, env_kwargs, config)


if __name__ == "__main__":
    main()

"""Planning time per action of sb3-bayes' PETS (CEM + TSinf) on Pendulum-v1, float32 and bfloat16.

Run from the repository root:
    python -m benchmarks.pets_speed.bench_ours --dtype float32 --n-actions 10 \
        --out benchmarks/pets_speed/results/ours_float32_r1.json
Times ``model.policy.predict(obs)`` (warm start kept between calls, as in a real episode) with the config in
timing.CONFIG. Weights are untrained; the input standardiser is fitted on random transitions of the env so it is not
identity (same data and seed as bench_mbrl.py).

``--env`` (Pendulum-v1, InvertedPendulum-v5, Reacher-v5) chooses the shapes, known reward (and termination) and the
episodes; ``--config recommended`` plans with the env's section of hyperparams/pets.yml (planner, population,
particles, network, planning_threads) instead of the paper configuration:
    python -m benchmarks.pets_speed.bench_ours --env Reacher-v5 --config recommended --n-actions 10

``--compare-dtypes`` instead measures how much bfloat16 planning changes the chosen action: for a fixed set of
observations, the same weights, the same torch seed and a fresh warm start, it plans once in float32 and once in
bfloat16 and reports |a_bf16 - a_fp32|, next to |a_fp32(seed s) - a_fp32(seed s')| as the planner's own noise.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np
import torch

from benchmarks.common import REPO_ROOT, Timer, write_result
from benchmarks.pets_speed import timing

warnings.filterwarnings("ignore")


ICEM_KEYS = ("icem_noise_beta", "icem_population_decay", "icem_keep_elites_frac", "icem_execute")


def recommended_section(env_id: str) -> dict:
    """The env's section of hyperparams/pets.yml as PETS arguments (``policy_kwargs`` evaluated; run settings off)."""
    from benchmarks.common import hyperparams_path, load_zoo_section

    name, section = load_zoo_section(hyperparams_path("pets.yml"), env_id)
    if name != env_id:
        raise ValueError(f"hyperparams/pets.yml has no section {env_id!r}")
    for key in ("n_timesteps", "policy", "env_kwargs"):
        section.pop(key, None)
    return section


def build_model(dtype: str, seed: int, train_steps: int = 0, env_id: str = timing.CONFIG["env_id"], config: str = "paper"):
    """Our PETS at the benchmark config (``config="recommended"``: the env's YAML section) on ``env_id``.
    ``train_steps > 0``: fit the model once on that many random-action steps (used by --compare-dtypes, so that the
    action comparison is on a model that has learnt something)."""
    from sb3_bayes import PETS

    torch.manual_seed(seed)
    if config == "paper":
        cfg = timing.paper_config(env_id)
        kwargs = dict(
            plan_horizon=cfg["plan_horizon"],
            popsize=cfg["popsize"],
            num_elites=cfg["num_elites"],
            cem_iters=cfg["cem_iters"],
            cem_alpha=cfg["cem_alpha"],
            n_particles=cfg["n_particles"],
            propagation=cfg["propagation"],
            reward_fn="auto",
            policy_kwargs=dict(ensemble_size=cfg["ensemble_size"], net_arch=list(cfg["hidden"])),
        )
    elif config == "recommended":
        kwargs = recommended_section(env_id)
        kwargs["reward_fn"] = "auto"  # what the YAML says too; the timing needs the known reward
        for key in ("planning_dtype", "seed", "device"):  # given below (--dtype, --seed, CPU)
            kwargs.pop(key, None)
    else:
        raise ValueError(f"config {config!r} is not one of {timing.CONFIGS}")
    if train_steps:
        kwargs.update(learning_starts=train_steps, train_freq=(train_steps, "step"), n_epochs=50)
    model = PETS("MlpPolicy", env_id, planning_dtype=dtype, seed=seed, device="cpu", **kwargs)
    dyn = model.policy.dynamics
    if train_steps:
        model.learn(train_steps)  # random actions until the first training call, which happens at the last step
        assert model.n_training_rounds == 1
    else:
        O, A, _ = timing.random_env_data(1000, seed=seed, env_id=env_id)
        dyn.input_normalizer.fit(dyn.raw_inputs(torch.as_tensor(O), torch.as_tensor(A)))
    # Sanity: the known reward is in use, and it is the very function bench_mbrl.py loads.
    assert model.policy.known_model is not None
    policy = model.policy
    planner = dict(
        env_id=env_id,
        config=config,
        planner=model.planner,
        plan_horizon=model.plan_horizon,
        popsize=model.popsize,
        num_elites=model.num_elites,
        cem_iters=model.cem_iters,
        cem_alpha=model.cem_alpha,
        n_particles=model.n_particles,
        propagation=model.propagation,
        planning_threads=model.planning_threads,
        ensemble_size=policy.dynamics.network.ensemble_size,
        hidden=list(model.policy_kwargs.get("net_arch", [])),
        icem={k: getattr(model, k) for k in ICEM_KEYS} if model.planner == "icem" else None,
    )
    info = dict(
        planner=planner,
        network=repr(dyn.network).replace("\n", " "),
        input_dim=dyn.input_dim,
        normalizer_mean=dyn.input_normalizer.mean.tolist(),
        normalizer_std=dyn.input_normalizer.std.tolist(),
        reward_fn=f"{model.policy.known_model.reward_fn.__module__}.{model.policy.known_model.reward_fn.__name__}",
    )
    return model, info


def source_fingerprint() -> dict:
    """sha256 (first 12 hex) of the sb3_bayes files on the planning path: the code is still moving."""
    import hashlib

    files = [
        "sb3_bayes/pets/policies.py",
        "sb3_bayes/common/ensemble.py",
        "sb3_bayes/common/trajectory_optimizers.py",
        "sb3_bayes/common/propagation.py",
        "sb3_bayes/common/utils.py",
        "sb3_bayes/envs/known_rewards.py",
    ]
    out = {}
    for f in files:
        path = os.path.join(REPO_ROOT, f)
        if os.path.exists(path):
            with open(path, "rb") as fh:
                out[f] = hashlib.sha256(fh.read()).hexdigest()[:12]
    return out


def act_fn(model):
    def act(obs):
        action, _ = model.policy.predict(obs, deterministic=True)
        return action

    return act


def time_dtype(args):
    model, info = build_model(args.dtype, args.seed, env_id=args.env, config=args.config)
    config = dict(
        impl="sb3-bayes",
        dtype=args.dtype,
        config_name=args.config,
        planner=info["planner"],
        sb3_bayes_sources=source_fingerprint(),
    )
    return timing.planning_time(args, act_fn(model), config, info)


def compare_dtypes(args):
    """Action difference bfloat16 vs float32 from the same seeds (and float32 seed-to-seed, for scale)."""
    model, _ = build_model("float32", args.seed, train_steps=args.train_steps, env_id=args.env, config=args.config)
    policy = model.policy
    O, _, _ = timing.random_env_data(args.n_obs, seed=args.seed + 1, env_id=args.env)

    def plan_first_action(obs, dtype, seed):
        policy.planner_settings = dataclasses.replace(policy.planner_settings, planning_dtype=dtype)
        policy.plan_warm_start = torch.zeros(0)  # a fresh warm start: plan() starts from the bound midpoint
        torch.manual_seed(seed)
        action, _ = policy.predict(obs, deterministic=True)
        return float(np.asarray(action).reshape(-1)[0])

    rows = []
    for i, obs in enumerate(O):
        s = 1000 + i
        a32 = plan_first_action(obs, "float32", s)
        a16 = plan_first_action(obs, "bfloat16", s)
        a32b = plan_first_action(obs, "float32", s + 10_000)
        rows.append((a32, a16, a32b))
    a = np.asarray(rows)
    d16 = np.abs(a[:, 1] - a[:, 0])
    dseed = np.abs(a[:, 2] - a[:, 0])
    span = float(policy.action_high[0] - policy.action_low[0])
    results = dict(
        n_obs=len(O),
        action_range=span,
        bf16_vs_fp32_same_seed=dict(mean_abs=float(d16.mean()), median_abs=float(np.median(d16)), max_abs=float(d16.max())),
        fp32_vs_fp32_other_seed=dict(
            mean_abs=float(dseed.mean()), median_abs=float(np.median(dseed)), max_abs=float(dseed.max())
        ),
        actions_fp32_bf16_fp32otherseed=a.tolist(),
    )
    note = (
        f"model trained once (50 epochs) on {args.train_steps} random-action steps; "
        if args.train_steps
        else "untrained weights, input normaliser fitted on random data; "
    ) + "fresh warm start per plan"
    return dict(impl="sb3-bayes", what="bf16_vs_fp32_action_difference", note=note), results


def main():
    p = timing.arguments()
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--config", choices=timing.CONFIGS, default="paper", help="paper config, or the env's YAML section")
    p.add_argument("--compare-dtypes", action="store_true")
    p.add_argument("--n-obs", type=int, default=10, help="observations for --compare-dtypes")
    p.add_argument("--train-steps", type=int, default=400, help="random steps to train on for --compare-dtypes")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.compare_dtypes:
        with Timer() as timer:
            config, results = compare_dtypes(args)
        record = timing.result("dtype_difference", args, config, results, timer.cpu_seconds, timer.wall_seconds)
    else:
        record = time_dtype(args)
    write_result(args.out, record, echo=True)


if __name__ == "__main__":
    main()

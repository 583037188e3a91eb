"""Planning time per action of mbrl-lib 0.2.0's PETS (CEM + TSinf) on Pendulum-v1 shapes (``--env``: or
InvertedPendulum-v5's or Reacher-v5's, with their known reward and termination from sb3_bayes/envs/known_rewards.py).

Run with the mbrl-lib venv, from the repository root:
    benchmarks/pets_speed/.venv-mbrl/bin/python -m benchmarks.pets_speed.bench_mbrl --n-actions 10 \
        --out benchmarks/pets_speed/results/mbrl_r1.json
Builds the agent the way mbrl-lib's PETS example notebook does (GaussianMLP ensemble,
OneDTransitionRewardModel, ModelEnv, TrajectoryOptimizerAgent with CEMOptimizer), with the config
in timing.CONFIG and SiLU activations. Weights are untrained (planning cost does not depend on
training); the input normaliser is fitted on random transitions of the env so it is not identity.
mbrl-lib always plans at the paper configuration (timing.CONFIG); only our side has a "recommended" one.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from benchmarks.common import write_result
from benchmarks.pets_speed import timing

warnings.filterwarnings("ignore")


def build_agent(seed: int, env_id: str = timing.CONFIG["env_id"]):
    import gymnasium as gym
    import mbrl.env.termination_fns as termination_fns
    import mbrl.models as models
    import mbrl.planning as mbrl_planning
    import mbrl.types
    import mbrl.util.common as common_util
    import omegaconf

    cfg = timing.paper_config(env_id)
    env = gym.make(env_id)
    obs_shape, act_shape = env.observation_space.shape, env.action_space.shape
    device = "cpu"
    torch.manual_seed(seed)
    np.random.seed(seed)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)

    # As in mbrl-lib's notebooks/pets_example.ipynb, but SiLU instead of the notebook's LeakyReLU.
    cfg_dict = {
        "dynamics_model": {
            "_target_": "mbrl.models.GaussianMLP",
            "device": device,
            "num_layers": len(cfg["hidden"]),  # in->h1, h1->h2, h2->h3, then h3->2*out
            "ensemble_size": cfg["ensemble_size"],
            "hid_size": cfg["hidden"][0],
            "in_size": "???",
            "out_size": "???",
            "deterministic": False,
            "propagation_method": "fixed_model",  # = TSinf
            "activation_fn_cfg": {"_target_": "torch.nn.SiLU"},
            # mbrl 0.2.0 pins hydra-core==1.0.3, whose instantiate() did not recurse into nested
            # configs; hydra 1.3 does, turning activation_fn_cfg into an nn.SiLU object that
            # GaussianMLP then fails to OmegaConf.create(). _recursive_=False restores 1.0 behaviour.
            "_recursive_": False,
        },
        "algorithm": {"learned_rewards": False, "target_is_delta": True, "normalize": True},
        "overrides": {"trial_length": 200, "num_steps": 2000, "model_batch_size": 32, "validation_ratio": 0.05},
    }
    mcfg = omegaconf.OmegaConf.create(cfg_dict)
    dynamics_model = common_util.create_one_dim_tr_model(mcfg, obs_shape, act_shape)
    gm = dynamics_model.model
    assert gm.in_size == obs_shape[0] + act_shape[0] and gm.out_size == obs_shape[0], (gm.in_size, gm.out_size)

    O, A, N = timing.random_env_data(1000, seed=seed, env_id=env_id)
    dynamics_model.update_normalizer(mbrl.types.TransitionBatch(O, A, N, np.zeros(len(O), np.float32), None, None))

    # Same reward (and termination) functions as our PETS (sb3_bayes.envs.known_rewards: KNOWN_MODEL_SPECS[env_id]).
    # Pendulum-v1's reward needs the *pre-step* observation (it is computed before the state update), which
    # mbrl-lib's RewardFnType(act, next_obs) does not receive: this ModelEnv subclass only records
    # model_state["obs"] before delegating to mbrl's own step(). InvertedPendulum-v5's termination (|angle| > 0.2
    # after the step) becomes mbrl's TermFnType(act, next_obs) -> [B, 1] bool: mbrl's evaluate_action_sequences then
    # zeroes a particle's rewards after its terminating step, as our planner does (and the reward fn already gives 0 on
    # that step). Reacher-v5 and Pendulum-v1 never terminate (mbrl's no_termination, as our no_termination).
    kr = timing.load_known_rewards_module()
    spec = kr.KNOWN_MODEL_SPECS[env_id]
    assert not spec.env_kwargs, spec.env_kwargs

    class PreStepObsModelEnv(models.ModelEnv):
        def step(self, actions, model_state, sample=False):
            self._pre_step_obs = model_state["obs"]
            return super().step(actions, model_state, sample=sample)

    def reward_fn(act, next_obs):
        return spec.reward_fn(model_env._pre_step_obs, act, next_obs).view(-1, 1)

    if spec.termination_fn is kr.no_termination:
        termination_fn = termination_fns.no_termination
    else:

        def termination_fn(act, next_obs):
            return spec.termination_fn(model_env._pre_step_obs, act, next_obs).view(-1, 1)

    model_env = PreStepObsModelEnv(env, dynamics_model, termination_fn, reward_fn, generator=generator)
    agent_cfg = omegaconf.OmegaConf.create(
        {
            "_target_": "mbrl.planning.TrajectoryOptimizerAgent",
            "_recursive_": False,  # optimizer_cfg must reach the agent as a config (hydra 1.0 semantics)
            "planning_horizon": cfg["plan_horizon"],
            "replan_freq": 1,
            "verbose": False,
            "action_lb": "???",
            "action_ub": "???",
            "optimizer_cfg": {
                "_target_": "mbrl.planning.CEMOptimizer",
                "num_iterations": cfg["cem_iters"],
                "elite_ratio": cfg["num_elites"] / cfg["popsize"],
                "population_size": cfg["popsize"],
                "alpha": cfg["cem_alpha"],
                "device": device,
                "lower_bound": "???",
                "upper_bound": "???",
                "return_mean_elites": True,
                "clipped_normal": False,
            },
        }
    )
    agent = mbrl_planning.create_trajectory_optim_agent_for_model(model_env, agent_cfg, num_particles=cfg["n_particles"])
    assert agent.optimizer.optimizer.elite_num == cfg["num_elites"]
    info = dict(
        reward_fn=f"known_rewards.{spec.reward_fn.__name__}",
        termination_fn=f"known_rewards.{spec.termination_fn.__name__}",
        gaussian_mlp=repr(gm.hidden_layers).replace("\n", " "),
        normalizer_mean=dynamics_model.input_normalizer.mean.flatten().tolist(),
        normalizer_std=dynamics_model.input_normalizer.std.flatten().tolist(),
    )
    return agent, info


def main():
    args = timing.arguments().parse_args()
    torch.set_num_threads(args.threads)

    import mbrl

    agent, info = build_agent(args.seed, args.env)
    config = dict(impl="mbrl-lib", mbrl_version=getattr(mbrl, "__version__", "?"), dtype="float32", config_name="paper")
    write_result(args.out, timing.planning_time(args, agent.act, config, info), echo=True)


if __name__ == "__main__":
    main()

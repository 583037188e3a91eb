#!/bin/sh
# Sixth part, started after run_part5.sh (from the repo root): the EWC run that also regularises the critic, seeds 1
# and 2, so that this variant has 3 seeds like none-fixedN and ewc-fixedN. Skips runs whose JSON exists.
#   nohup sh benchmarks/bayes_ddpg/run_part6.sh > benchmarks/bayes_ddpg/results/run_part6.log 2>&1 &
R=benchmarks/bayes_ddpg/results
HP_AC='{"learning_starts": 1000, "gamma": 0.98, "buffer_size": 200000, "policy_kwargs": {"net_arch": [64, 64]}, "ewc_modules": ["actor", "critic"]}'
uptime
for seed in 1 2; do
  [ -f "$R/forgetting/bayes_ddpg_ewc-actor-critic_s$seed.json" ] && continue
  python -m sb3_bayes.continual --algo bayes_ddpg --sequence pendulum-gravity --n-timesteps 3000 --hyperparams "$HP_AC" \
    --consolidation ewc --ewc-lambda 10000 --seed $seed --n-eval-episodes 5 --out $R/forgetting \
    --name bayes_ddpg_ewc-actor-critic_s$seed
done
uptime

#!/bin/sh
# Every run of the BayesianDDPG benchmark, in priority order, one at a time on one thread (run from the repo root):
#   nohup sh benchmarks/bayes_ddpg/run_all.sh > benchmarks/bayes_ddpg/results/run_all.log 2>&1 &

R=benchmarks/bayes_ddpg/results
HP='{"learning_starts": 1000, "gamma": 0.98, "buffer_size": 200000, "policy_kwargs": {"net_arch": [64, 64]}}'
uptime
# 1. Learning: Pendulum-v1, 3 seeds x 3 algorithms, 5000 steps each.
for seed in 0 1 2; do
  for algo in bayes_ddpg td3 ddpg; do
    python benchmarks/bayes_ddpg/run_learning.py --algo $algo --env Pendulum-v1 --seed $seed --out $R/learning
  done
done
uptime
# 2. Forgetting: Pendulum gravity sequence g = 10, 4, 16 (3000 steps per task, buffer emptied at each switch).
for c in none ewc vcl; do
  python -m sb3_bayes.continual --algo bayes_ddpg --sequence pendulum-gravity --n-timesteps 3000 --hyperparams "$HP" \
    --consolidation $c --ewc-lambda 10000 --seed 0 --n-eval-episodes 5 --out $R/forgetting --name bayes_ddpg_${c}_s0
done
uptime
# 3. Learning: InvertedPendulum-v5, 3 seeds x 3 algorithms, 5000 steps each.
for seed in 0 1 2; do
  for algo in bayes_ddpg td3 ddpg; do
    python benchmarks/bayes_ddpg/run_learning.py --algo $algo --env InvertedPendulum-v5 --seed $seed --out $R/learning
  done
done
uptime

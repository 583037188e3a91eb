#!/bin/sh
# Third part (replaced the rest of run_part2.sh after its first InvertedPendulum run): the remaining InvertedPendulum-v5
# runs of seed 0, EWC with the original project's lambda (1e6; 1e4 had left task 1 unprotected), then more seeds.
#   nohup sh benchmarks/bayes_ddpg/run_part3.sh > benchmarks/bayes_ddpg/results/run_part3.log 2>&1 &
R=benchmarks/bayes_ddpg/results
HP='{"learning_starts": 1000, "gamma": 0.98, "buffer_size": 200000, "policy_kwargs": {"net_arch": [64, 64]}}'
uptime
for algo in td3 ddpg; do
  python benchmarks/bayes_ddpg/run_learning.py --algo $algo --env InvertedPendulum-v5 --seed 0 --out $R/learning
done
uptime
python -m sb3_bayes.continual --algo bayes_ddpg --sequence pendulum-gravity --n-timesteps 3000 --hyperparams "$HP" \
  --consolidation ewc --ewc-lambda 1000000 --seed 0 --n-eval-episodes 5 --out $R/forgetting --name bayes_ddpg_ewc-lambda1e6_s0
uptime
for seed in 1 2; do
  for algo in bayes_ddpg td3 ddpg; do
    python benchmarks/bayes_ddpg/run_learning.py --algo $algo --env InvertedPendulum-v5 --seed $seed --out $R/learning
  done
done
uptime

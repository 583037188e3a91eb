#!/bin/sh
# Second part of the benchmark, run after run_all.sh was stopped after its VCL forgetting run (from the repo root):
#   nohup sh benchmarks/bayes_ddpg/run_part2.sh > benchmarks/bayes_ddpg/results/run_part2.log 2>&1 &
# (1) EWC again with the fixed actor Fisher (before the tanh; the first EWC run, kept as ewc-posttanh, took it after
# the tanh, where saturated torques give a zero Jacobian); (2) InvertedPendulum-v5 with the seeds the CPU allowed.
R=benchmarks/bayes_ddpg/results
HP='{"learning_starts": 1000, "gamma": 0.98, "buffer_size": 200000, "policy_kwargs": {"net_arch": [64, 64]}}'
uptime
python -m sb3_bayes.continual --algo bayes_ddpg --sequence pendulum-gravity --n-timesteps 3000 --hyperparams "$HP" \
  --consolidation ewc --ewc-lambda 10000 --seed 0 --n-eval-episodes 5 --out $R/forgetting --name bayes_ddpg_ewc_s0
uptime
for seed in 0 1 2; do
  for algo in bayes_ddpg td3 ddpg; do
    python benchmarks/bayes_ddpg/run_learning.py --algo $algo --env InvertedPendulum-v5 --seed $seed --out $R/learning
  done
done
uptime

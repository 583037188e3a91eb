#!/bin/sh
# Seventh part, started after run_part6.sh (from the repo root): VCL seeds 1 and 2 (the code's VCL path is that of
# bayes_ddpg_vcl_s0: the KL count fix of df8002a restarts N at a VCL consolidation, as the buffer did). Skips runs
# whose JSON exists.
#   nohup sh benchmarks/bayes_ddpg/run_part7.sh > benchmarks/bayes_ddpg/results/run_part7.log 2>&1 &
R=benchmarks/bayes_ddpg/results
HP='{"learning_starts": 1000, "gamma": 0.98, "buffer_size": 200000, "policy_kwargs": {"net_arch": [64, 64]}}'
uptime
for seed in 1 2; do
  [ -f "$R/forgetting/bayes_ddpg_vcl_s$seed.json" ] && continue
  python -m sb3_bayes.continual --algo bayes_ddpg --sequence pendulum-gravity --n-timesteps 3000 --hyperparams "$HP" \
    --consolidation vcl --seed $seed --n-eval-episodes 5 --out $R/forgetting --name bayes_ddpg_vcl_s$seed
done
uptime

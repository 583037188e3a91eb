#!/bin/sh
# Fourth part (replaced the rest of run_part3.sh after the InvertedPendulum-v5 runs of seeds 0 and 1): the forgetting
# runs without consolidation and with EWC again, after the fix of the KL data count N (commit df8002a: N no longer
# restarts at 1 when the buffer is emptied at a task switch, which had pulled every weight to the prior's 0).
#   nohup sh benchmarks/bayes_ddpg/run_part4.sh > benchmarks/bayes_ddpg/results/run_part4.log 2>&1 &
R=benchmarks/bayes_ddpg/results
HP='{"learning_starts": 1000, "gamma": 0.98, "buffer_size": 200000, "policy_kwargs": {"net_arch": [64, 64]}}'
uptime
for c in none ewc; do
  python -m sb3_bayes.continual --algo bayes_ddpg --sequence pendulum-gravity --n-timesteps 3000 --hyperparams "$HP" \
    --consolidation $c --ewc-lambda 10000 --seed 0 --n-eval-episodes 5 --out $R/forgetting --name bayes_ddpg_${c}-fixedN_s0
done
uptime

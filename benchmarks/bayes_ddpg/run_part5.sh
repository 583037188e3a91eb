#!/bin/sh
# Fifth part: the runs that complete issue #5's protocol (from the repo root, code of commit df8002a or later with the
# same sb3_bayes/bayes_ddpg):
#   nohup sh benchmarks/bayes_ddpg/run_part5.sh > benchmarks/bayes_ddpg/results/run_part5.log 2>&1 &
# (1) InvertedPendulum-v5 seed 2 at 5000 steps (settings of seeds 0 and 1), so the MuJoCo task has 3 seeds;
# (2) InvertedPendulum-v5 at 10000 steps, seeds 0-2, all three algorithms (same settings, longer budget);
# (3) forgetting seeds 1 and 2 without consolidation and with EWC (current code), then one EWC run that regularises
#     actor and critic. A run whose JSON exists is skipped, so the script resumes where it stopped.
R=benchmarks/bayes_ddpg/results
HP='{"learning_starts": 1000, "gamma": 0.98, "buffer_size": 200000, "policy_kwargs": {"net_arch": [64, 64]}}'
HP_AC='{"learning_starts": 1000, "gamma": 0.98, "buffer_size": 200000, "policy_kwargs": {"net_arch": [64, 64]}, "ewc_modules": ["actor", "critic"]}'
learn() {  # algo seed out [extra args]
  [ -f "$3/$1_InvertedPendulum-v5_s$2.json" ] && return 0
  python benchmarks/bayes_ddpg/run_learning.py --algo "$1" --env InvertedPendulum-v5 --seed "$2" --out "$3" $4
}
forget() {  # consolidation seed name hyperparams
  [ -f "$R/forgetting/bayes_ddpg_$3_s$2.json" ] && return 0
  python -m sb3_bayes.continual --algo bayes_ddpg --sequence pendulum-gravity --n-timesteps 3000 --hyperparams "$4" \
    --consolidation "$1" --ewc-lambda 10000 --seed "$2" --n-eval-episodes 5 --out $R/forgetting --name "bayes_ddpg_$3_s$2"
}
uptime
for algo in bayes_ddpg td3 ddpg; do learn $algo 2 $R/learning; done
uptime
for seed in 0 1 2; do
  for algo in bayes_ddpg td3 ddpg; do learn $algo $seed $R/learning_10k "--n-timesteps 10000"; done
done
uptime
for seed in 1 2; do
  forget none $seed none-fixedN "$HP"
  forget ewc $seed ewc-fixedN "$HP"
done
uptime
forget ewc 0 ewc-actor-critic "$HP_AC"
uptime

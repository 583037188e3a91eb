#!/usr/bin/env bash
# The runs behind benchmarks/bayes_dqn/results, one at a time on 1 thread (the CPU was shared with four other jobs),
# then the tables and the plot. A run whose output already exists is skipped, so the script resumes where it stopped.
# From anywhere: bash benchmarks/bayes_dqn/run_all.sh   (PY: the Python to use, default python)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
OUT=benchmarks/bayes_dqn/results/learning
run() {  # algo env seed steps [extra args]
  [ -f "$OUT/$1_$2_s$3.json" ] && return 0
  "$PY" -m benchmarks.bayes_dqn.run_learning --algo "$1" --env "$2" --seed "$3" --steps "$4" "${@:5}" --out $OUT
}
for seed in 0 1 2; do for algo in bbb blr dqn; do run $algo CartPole-v1 $seed 15000; done; done
# Forgetting on CartPole with pole lengths 0.5 -> 2.0 -> 0.25 (BBQN head; the settings of the learning test:
# rl-zoo3's CartPole schedule, 64x64 network, learning rate 1e-3), without and with EWC.
HP='{"learning_rate": 0.001, "batch_size": 64, "buffer_size": 20000, "learning_starts": 1000, "target_update_interval": 10, "train_freq": 256, "gradient_steps": 128, "policy_kwargs": {"net_arch": [64, 64]}}'
for consolidation in none ewc; do
  [ -f benchmarks/bayes_dqn/results/continual/bbb_$consolidation.csv ] && continue
  "$PY" -m benchmarks.continual bayes_dqn --algo bayes_dqn --sequence cartpole-length --n-timesteps 5000 --hyperparams "$HP" \
    --consolidation $consolidation --ewc-lambda 1000 --seed 0 --threads 1 --n-eval-episodes 5 \
    --out benchmarks/bayes_dqn/results/continual --name bbb_$consolidation
done
for seed in 0 1 2; do for algo in bbb blr dqn; do run $algo DeepSea10-v0 $seed 3000 --eval-freq 500; done; done
# Issue #15: the ensemble head (randomized prior functions) on CartPole at equal steps, and on DeepSea 10 and 20 until
# bsuite's solve (running bad fraction < 0.9) plus 100 episodes; DeepSea 20 with batch 32 and at most 29 min per run
# (the CPU was shared with about ten other jobs).
for seed in 0 1 2; do run ensemble CartPole-v1 $seed 15000; done
# A variant chosen after those runs: every member on all data, prior scale 1.
for seed in 0 1 2; do
  [ -f "$OUT/ensemble_p1_beta1_CartPole-v1_s$seed.json" ] && continue
  "$PY" -m benchmarks.bayes_dqn.run_learning --algo ensemble --env CartPole-v1 --seed $seed --steps 15000 --out $OUT \
    --set "dict(bootstrap_prob=1.0, policy_kwargs=dict(net_arch=[256, 256], prior_scale=1.0))" --name ensemble_p1_beta1
done
deepsea() {  # size seed name [extra args]
  [ -f benchmarks/bayes_dqn/results/deepsea/$3_N$1_s$2.json ] && return 0
  "$PY" -m benchmarks.bayes_dqn.deepsea --size "$1" --seed "$2" --name "$3" --episodes 3000 --after-solved 100 "${@:4}"
}
for seed in 0 1 2; do deepsea 10 $seed ensemble; done
for seed in 0 1 2; do deepsea 20 $seed ensemble_b32 --max-wall-seconds 1740 --set "dict(batch_size=32)"; done
deepsea 30 0 ensemble_b32 --episodes 5000 --max-wall-seconds 2900 --set "dict(batch_size=32)"
# Ablation: the same ensemble without its randomized priors (bootstrapped DQN), DeepSea 10.
for seed in 0 1 2; do
  deepsea 10 $seed ensemble_no_prior --episodes 1000 --max-wall-seconds 480 \
    --set "dict(policy_kwargs=dict(net_arch=[50, 50], n_heads=10, prior_scale=0.0))"
done
# Two probes of the Bayesian last layer with the random-feature prior on DeepSea 10 (one seed, 1000 episodes each).
deepsea 10 0 blr_prior_c10 --episodes 1000 --after-solved 50 --max-wall-seconds 300 --set "dict(head='blr', resample_every=0, \
posterior_update_freq=100, batch_size=32, policy_kwargs=dict(net_arch=[50, 50], prior_features=256, prior_feature_scale=10.0))"
deepsea 10 0 blr_prior_c3 --episodes 1000 --after-solved 50 --max-wall-seconds 300 --set "dict(head='blr', resample_every=0, \
posterior_update_freq=100, batch_size=32, blr_noise_var=0.01, blr_prior_var=0.01, policy_kwargs=dict(net_arch=[50, 50], \
prior_features=256, prior_lengthscale=0.5, prior_feature_scale=3.0))"
"$PY" -m benchmarks.bayes_dqn.summarize

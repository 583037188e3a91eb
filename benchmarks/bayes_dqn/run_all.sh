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
"$PY" -m benchmarks.bayes_dqn.summarize

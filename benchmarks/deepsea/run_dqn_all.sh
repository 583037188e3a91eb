#!/usr/bin/env bash
# All DQN runs of the DeepSea benchmark, one after the other (1 torch thread each). From the repository root:
# bash benchmarks/deepsea/run_dqn_all.sh [sizes...]   (default: 5 10 15 20 25 30)
# Budget: 100 N episodes for N <= 15, 1000 episodes for N >= 20.
set -e
cd "$(dirname "$0")"
PY=${PY:-python}
for size in ${@:-5 10 15 20 25 30}; do
  episodes=$((size * 100)); [ "$size" -ge 20 ] && episodes=1000
  for seed in 0 1 2; do
    "$PY" run_dqn.py --size "$size" --seed "$seed" --episodes "$episodes" --out "results/dqn_N${size}_s${seed}.json"
  done
done

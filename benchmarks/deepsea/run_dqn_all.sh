#!/usr/bin/env bash
# All DQN runs of the DeepSea benchmark, one after the other (1 torch thread each). From the repository root.
# Budget: 100 N episodes (1000 for N = 20). (Sizes 25 and 30 were left out: CPU time.)
set -e
cd "$(dirname "$0")"
for size in 5 10 15 20; do
  episodes=$((size * 100)); [ "$size" = 20 ] && episodes=1000
  for seed in 0 1 2; do
    python run_dqn.py --size "$size" --seed "$seed" --episodes "$episodes" --out "results/dqn_N${size}_s${seed}.json"
  done
done

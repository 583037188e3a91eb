#!/usr/bin/env bash
# The PSDRL runs of the DeepSea benchmark that ran, one after the other (1 torch thread each), with the settings of
# hyperparams/psdrl.yml. A run stops at its episode budget or 50 episodes after it first reached the goal.
# From the repository root. (N = 10 seed 2 and N = 15, 20 did not fit in the CPU time available; see README.md.)
set -e
cd "$(dirname "$0")"
run() {  # size seed budget
  python run_psdrl.py --size "$1" --seed "$2" --episodes "$3" --after-success 50 --out "results/psdrl_N$1_s$2.json"
}
for seed in 0 1 2; do run 5 "$seed" 200; done
for seed in 0 1; do run 10 "$seed" 300; done

#!/usr/bin/env bash
# The PSDRL runs of the DeepSea benchmark, one after the other (1 torch thread each), with the settings of
# hyperparams/psdrl.yml. A run stops at its episode budget or 30 episodes after it first reached the goal.
# From the repository root: bash benchmarks/deepsea/run_psdrl_all.sh [sizes...]   (default: 5 10 15 20; also 25 30)
set -e
cd "$(dirname "$0")"
PY=${PY:-python}
SEEDS=${SEEDS:-0 1 2}
budget() { case "$1" in 5) echo 200 ;; 10) echo 300 ;; 15) echo 500 ;; 30) echo 300 ;; *) echo 1000 ;; esac; }
for size in ${@:-5 10 15 20}; do
  for seed in $SEEDS; do
    out="results/psdrl_N${size}_s${seed}.json"
    "$PY" run_psdrl.py --size "$size" --seed "$seed" --episodes "$(budget "$size")" --after-success 30 --out "$out"
  done
done

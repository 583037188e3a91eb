#!/usr/bin/env bash
# The measurements of the PSDRL speed benchmark, one after the other (from the repository root), as they ran.
set -e
T=${THREADS:-1}
# A whole round and acting at 846 transitions (one random Pong episode).
python benchmarks/psdrl_speed/bench.py --transitions 800 --threads "$T" --out benchmarks/psdrl_speed/results/round_800_fp32.json
# bfloat16 autocast of the look-ahead and value targets: posterior, value fit and acting.
python benchmarks/psdrl_speed/bench.py --transitions 800 --threads "$T" --inference-dtype bfloat16 \
  --components posterior,value,act --out benchmarks/psdrl_speed/results/round_800_bf16.json
# 10k transitions: posterior refit and value fit. (A run with `--train-iterations 1` and all components was stopped for
# CPU time after its autoencoder iteration; that number is in results/log_10k_autoencoder.txt.)
python benchmarks/psdrl_speed/bench.py --transitions 10000 --threads "$T" --components posterior,value \
  --out benchmarks/psdrl_speed/results/round_10k_fp32.json

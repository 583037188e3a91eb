#!/usr/bin/env bash
# Every measurement of the PSDRL speed benchmark, one after the other (from the repository root).
# At 10k transitions the autoencoder and the transition model run 1 iteration (CPU time on the shared machine);
# an iteration costs the same every time (a fresh batch of 125 x 250 steps), so a round counts it 3 times.
set -e
T=${THREADS:-1}
python benchmarks/psdrl_speed/bench.py --transitions 800 --threads "$T" --out benchmarks/psdrl_speed/results/round_800_fp32.json
python benchmarks/psdrl_speed/bench.py --transitions 800 --threads "$T" --inference-dtype bfloat16 \
  --components posterior,value,act --out benchmarks/psdrl_speed/results/round_800_bf16.json
python benchmarks/psdrl_speed/bench.py --transitions 10000 --threads "$T" --train-iterations 1 \
  --out benchmarks/psdrl_speed/results/round_10k_fp32.json

#!/usr/bin/env bash
# Every measurement of the PSDRL speed benchmark, one after the other (from the repository root).
set -e
T=${THREADS:-1}
python benchmarks/psdrl_speed/bench.py --transitions 800 --threads "$T" --out benchmarks/psdrl_speed/results/round_800_fp32.json
python benchmarks/psdrl_speed/bench.py --transitions 800 --threads "$T" --inference-dtype bfloat16 \
  --components posterior,value,act --out benchmarks/psdrl_speed/results/round_800_bf16.json
python benchmarks/psdrl_speed/bench.py --transitions 10000 --threads "$T" --out benchmarks/psdrl_speed/results/round_10k_fp32.json

#!/usr/bin/env bash
# The exact commands behind results/: two queues run side by side (2 processes, 1 torch thread each).
# Usage (from the repository root): bash benchmarks/pets_learning/run_all.sh
set -euo pipefail
cd "$(dirname "$0")"
PY=${PY:-/work/venv/bin/python}
mkdir -p results/logs

pets() { $PY run_pets.py --env "$1" --seed "$2" --steps "$3" --out "results/pets_$1_s$2.json" > "results/logs/pets_$1_s$2.log" 2>&1; }
sac()  { $PY run_sac.py  --env "$1" --seed "$2" --steps "$3" --out "results/sac_$1_s$2.json"  > "results/logs/sac_$1_s$2.log" 2>&1; }

(
  pets Pendulum-v1 0 1000
  pets Pendulum-v1 2 1000
  pets InvertedPendulum-v5 0 3000
  for s in 0 1 2; do sac InvertedPendulum-v5 $s 10000; done   # read at 3k steps; 10k for reference
) &
A=$!
(
  pets Pendulum-v1 1 1000
  for s in 0 1 2; do sac Pendulum-v1 $s 20000; done           # read at 1k steps; 20k for reference
  pets InvertedPendulum-v5 1 3000
  pets InvertedPendulum-v5 2 3000
) &
B=$!
wait $A $B
$PY plot.py
$PY summarize.py

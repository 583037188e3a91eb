#!/usr/bin/env bash
# The exact runs behind results/: two queues side by side (2 processes, 1 torch thread each), then the plot and the
# tables. From anywhere: bash benchmarks/pets_learning/run_all.sh   (PY: the Python to use, default python)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
R=benchmarks/pets_learning/results
mkdir -p $R/logs

run() {  # algo env seed steps
  "$PY" -m "benchmarks.pets_learning.run_$1" --env "$2" --seed "$3" --steps "$4" --out "$R/$1_$2_s$3.json" > "$R/logs/$1_$2_s$3.log" 2>&1
}

(
  run pets Pendulum-v1 0 1000
  run pets Pendulum-v1 2 1000
  run pets InvertedPendulum-v5 0 3000
  for s in 0 1 2; do run sac InvertedPendulum-v5 $s 10000; done   # read at 3k steps; 10k for reference
) &
A=$!
(
  run pets Pendulum-v1 1 1000
  for s in 0 1 2; do run sac Pendulum-v1 $s 20000; done           # read at 1k steps; 20k for reference
  run pets InvertedPendulum-v5 1 3000
  run pets InvertedPendulum-v5 2 3000
) &
B=$!
wait $A $B
"$PY" -m benchmarks.pets_learning.plot
"$PY" -m benchmarks.pets_learning.summarize

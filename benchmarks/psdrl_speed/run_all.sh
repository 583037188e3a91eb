#!/usr/bin/env bash
# The measurements of the PSDRL speed benchmark, one after the other, as they ran. From anywhere:
#   bash benchmarks/psdrl_speed/run_all.sh [PART...]   (default: round summary)
#   round      a whole round and acting at 846 transitions (one random Pong episode), float32; the bfloat16 autocast
#              posterior, value fit and acting; the posterior refit and value fit at 10k transitions
#   round_10k  one autoencoder iteration and one transition + terminal iteration at 10k transitions
#   act        acting, 300 actions with 1 and with 2 threads (results/act_quiet_*: every other job on the machine paused)
#   summary    results/summary.md
#   all        round round_10k act summary
# Environment: PY (python), THREADS (1; not for act). A run with `--train-iterations 1` and all components at 10k was
# stopped for CPU time after its autoencoder iteration; that number is in results/log_10k_autoencoder.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
T=${THREADS:-1}
R=benchmarks/psdrl_speed/results
PARTS=${*:-round summary}
[ "$PARTS" = all ] && PARTS="round round_10k act summary"
bench() { "$PY" -m benchmarks.psdrl_speed.bench "$@"; }

for part in $PARTS; do
  case "$part" in
    round)
      bench --transitions 800 --threads "$T" --out $R/round_800_fp32.json
      bench --transitions 800 --threads "$T" --inference-dtype bfloat16 --components posterior,value,act --out $R/round_800_bf16.json
      bench --transitions 10000 --threads "$T" --components posterior,value --out $R/round_10k_fp32.json ;;
    round_10k)
      bench --transitions 10000 --threads "$T" --components autoencoder --train-iterations 1 --out $R/round_10k_autoencoder.json
      bench --transitions 10000 --threads "$T" --components model --train-iterations 1 --out $R/round_10k_model.json ;;
    act)
      for threads in 1 2; do
        bench --transitions 800 --threads $threads --components act --actions 300 --out $R/act_quiet_${threads}thread.json
      done ;;
    summary)
      "$PY" -m benchmarks.psdrl_speed.summarize > $R/summary.md ;;
    *)
      echo "unknown part: $part (round round_10k act summary all)" >&2; exit 2 ;;
  esac
done

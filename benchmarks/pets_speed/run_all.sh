#!/usr/bin/env bash
# PETS planning speed: mbrl-lib 0.2.0 vs sb3-bayes, one thread. From anywhere:
#   bash benchmarks/pets_speed/run_all.sh     # 3 interleaved rounds x N=10 timed actions (after 2 warm-up) per config
#   ROUNDS=5 N=20 CORE=1 bash benchmarks/pets_speed/run_all.sh   # CORE pins every process to that core (taskset)
#   SKIP_BF16=1 NOBS=3 OUT=benchmarks/pets_speed/results_run4 bash benchmarks/pets_speed/run_all.sh   # run 4
# Needs the mbrl-lib venv benchmarks/pets_speed/.venv-mbrl (setup_mbrl_venv.sh; or MBRL_PY) and a Python with
# sb3_bayes installed (PY, default python). OUT (default benchmarks/pets_speed/results) is emptied of JSON files first.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
MBRL_PY=${MBRL_PY:-benchmarks/pets_speed/.venv-mbrl/bin/python}
N=${N:-10}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2}
OUT=${OUT:-benchmarks/pets_speed/results}
mkdir -p "$OUT"
rm -f "$OUT"/*.json
# One thread everywhere (the scripts also call torch.set_num_threads(1)).
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
PIN=()
if [[ -n "${CORE:-}" ]]; then PIN=(taskset -c "$CORE"); fi

{ lscpu | grep -E 'Model name|^CPU\(s\)|Thread|L2|L3'; echo "avx512/amx flags: $(grep -m1 flags /proc/cpuinfo | tr ' ' '\n' | grep -E 'avx512|amx' | tr '\n' ' ')"; } > "$OUT/lscpu.txt" || true
uptime > "$OUT/uptime_before.txt"

# Interleave the implementations round by round so that load from other work on the shared cores hits all alike.
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  "${PIN[@]}" "$MBRL_PY" -m benchmarks.pets_speed.bench_mbrl --n-actions "$N" --n-warmup "$WARMUP" --out "$OUT/mbrl_r$r.json" > /dev/null
  "${PIN[@]}" "$PY" -m benchmarks.pets_speed.bench_ours --dtype float32 --n-actions "$N" --n-warmup "$WARMUP" \
    --out "$OUT/ours_float32_r$r.json" > /dev/null
  if [[ "${SKIP_BF16:-0}" != 1 ]]; then
    "${PIN[@]}" "$PY" -m benchmarks.pets_speed.bench_ours --dtype bfloat16 --n-actions "$N" --n-warmup "$WARMUP" \
      --out "$OUT/ours_bfloat16_r$r.json" > /dev/null
  fi
done
"${PIN[@]}" "$PY" -m benchmarks.pets_speed.bench_ours --compare-dtypes --n-obs "${NOBS:-10}" --out "$OUT/dtype_diff.json" > /dev/null

uptime > "$OUT/uptime_after.txt"
"$PY" -m benchmarks.pets_speed.compare "$OUT" | tee "$OUT/table.md"

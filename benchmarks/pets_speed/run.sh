#!/usr/bin/env bash
# PETS planning speed: mbrl-lib 0.2.0 vs sb3-bayes, one thread. Usage (from the repo root):
#   bash benchmarks/pets_speed/run.sh     # 3 interleaved rounds x N=10 timed actions (after 2 warm-up) per config
#   ROUNDS=5 N=20 CORE=1 bash benchmarks/pets_speed/run.sh   # CORE pins every process to that core (taskset)
# Needs benchmarks/pets_speed/.venv-mbrl (see README.md) and /work/venv (or MAIN_PY) with sb3_bayes installed.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MBRL_PY="${MBRL_PY:-$HERE/.venv-mbrl/bin/python}"
MAIN_PY="${MAIN_PY:-/work/venv/bin/python}"
N="${N:-10}"
ROUNDS="${ROUNDS:-3}"
WARMUP="${WARMUP:-2}"
OUT="${OUT:-$HERE/results}"
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
  "${PIN[@]}" "$MBRL_PY" "$HERE/bench_mbrl.py" --n-actions "$N" --n-warmup "$WARMUP" --out "$OUT/mbrl_r$r.json" > /dev/null
  "${PIN[@]}" "$MAIN_PY" "$HERE/bench_ours.py" --dtype float32 --n-actions "$N" --n-warmup "$WARMUP" --out "$OUT/ours_float32_r$r.json" > /dev/null
  if [[ "${SKIP_BF16:-0}" != 1 ]]; then
    "${PIN[@]}" "$MAIN_PY" "$HERE/bench_ours.py" --dtype bfloat16 --n-actions "$N" --n-warmup "$WARMUP" --out "$OUT/ours_bfloat16_r$r.json" > /dev/null
  fi
done
"${PIN[@]}" "$MAIN_PY" "$HERE/bench_ours.py" --compare-dtypes --n-obs "${NOBS:-10}" --out "$OUT/dtype_diff.json" > /dev/null

uptime > "$OUT/uptime_after.txt"
python3 "$HERE/compare.py" "$OUT" | tee "$OUT/table.md"

#!/usr/bin/env bash
# The runs of the DeepSea benchmark, one after the other (1 torch thread each; the results were run two at a time on
# 2 cores). From anywhere: bash benchmarks/deepsea/run_all.sh [PART...]   (default: dqn psdrl summary)
#   dqn         SB3 DQN, seeds SEEDS, sizes SIZES; budget 100 N episodes for N <= 15, 1000 episodes for N >= 20
#   psdrl       PSDRL with hyperparams/psdrl.yml, seeds SEEDS, sizes SIZES; budget 200 / 300 / 500 / 1000 / 1000 / 300
#               episodes at N = 5 / 10 / 15 / 20 / 25 / 30; a run stops 30 episodes after it first reached the goal
#   summary     results/summary.md from the JSON files
#   ablation    PSDRL without the random-feature prior, N = 10, seeds 0-2 (results/ablation_no_prior/)
#   probe       PSDRL with 1024 prior features, N = 20, seed 0 (results/probe_prior_features_1024/)
#   diagnose    the posterior's reward std of tried and untried pairs, N = 10, with and without the prior
#   prior_rank  the closed-form prior-rank check (results/prior_rank_*.json)
#   round_cost  the cost of one round's refit at N = 20 and 25, with and without distinct_histories
#               (results/round_cost_N20.json, results/round_cost_N25.json)
#   suite       bsuite's protocol (suite.py): episodes to solve per algorithm, size and seed, SUITE_ALGOS at SUITE_SIZES,
#               seeds 0-2, episode cap SUITE_CAP, 100 episodes after the solving one, at most SUITE_MAX_WALL seconds a
#               run; then results/suite/summary.md and scaling.png
#   ensemble    the suite for BayesianDQN's ensemble head (the DeepSea sections of hyperparams/bayes_dqn.yml with 10
#               members, prior scale 5 and batch 32, the settings these runs had) at ENSEMBLE_SIZES, seeds 0-2, bsuite's cap of 10,000 episodes, no wall-time limit; then the
#               stochastic variant at N = 20 (bsuite's stochastic criterion); runs whose JSON exists are skipped
#   ensemble_bsuite  the ensemble head with bsuite's BootDQN settings (20 members, prior scale 3, batch 128; the
#               DeepSea sections now) at BSUITE_SIZES, seeds 0-2, at most BSUITE_MAX_WALL seconds of wall time a run
#               (label bayes_dqn-ensemble_bsuite)
#   diagnose_ensemble  the ensemble's greedy walks and its disagreement on the diagonal every 250 episodes, N = 30,
#               seed 0, 3000 episodes, 10 members, prior scale 5, batch 32; then with a 100k replay and with 5-step
#               targets (results/diagnose_ensemble/)
#   all         every part above
# Environment: PY (python), SEEDS ("0 1 2"), SIZES ("5 10 15 20 25 30"), SUITE_ALGOS ("dqn bayes_dqn-blr bayes_dqn-bbb";
# also psdrl, bayes_dqn), SUITE_SIZES ("10 20"), SUITE_CAP (2000; bsuite: 10000), SUITE_MAX_WALL (330; 0: none),
# ENSEMBLE_SIZES ("10 20 30"; bsuite: 10 12 ... 50), BSUITE_SIZES ("10 20 30 40"), BSUITE_MAX_WALL (6900; 0: none).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
SEEDS=${SEEDS:-0 1 2}
SIZES=${SIZES:-5 10 15 20 25 30}
R=benchmarks/deepsea/results
PARTS=${*:-dqn psdrl summary}
[ "$PARTS" = all ] && PARTS="dqn psdrl summary ablation probe diagnose prior_rank round_cost suite ensemble ensemble_bsuite
  diagnose_ensemble"

psdrl_budget() { case "$1" in 5) echo 200 ;; 10) echo 300 ;; 15) echo 500 ;; 30) echo 300 ;; *) echo 1000 ;; esac; }
psdrl() {  # size seed out [--set ...]
  "$PY" -m benchmarks.deepsea.run_psdrl --size "$1" --seed "$2" --episodes "$(psdrl_budget "$1")" --after-success 30 \
    --out "$3" "${@:4}"
}

for part in $PARTS; do
  case "$part" in
    dqn)
      for size in $SIZES; do
        episodes=$((size * 100)); [ "$size" -ge 20 ] && episodes=1000
        for seed in $SEEDS; do
          "$PY" -m benchmarks.deepsea.run_dqn --size "$size" --seed "$seed" --episodes "$episodes" --out "$R/dqn_N${size}_s${seed}.json"
        done
      done ;;
    psdrl)
      for size in $SIZES; do for seed in $SEEDS; do psdrl "$size" "$seed" "$R/psdrl_N${size}_s${seed}.json"; done; done ;;
    summary)
      "$PY" -m benchmarks.deepsea.summarize > "$R/summary.md" ;;
    ablation)
      for seed in 0 1 2; do
        psdrl 10 "$seed" "$R/ablation_no_prior/psdrl_N10_s$seed.json" --set policy_kwargs.prior_features=0
      done
      "$PY" -m benchmarks.deepsea.summarize results/ablation_no_prior > "$R/ablation_no_prior/summary.md" ;;
    probe)
      psdrl 20 0 "$R/probe_prior_features_1024/psdrl_N20_s0.json" --set policy_kwargs.prior_features=1024
      "$PY" -m benchmarks.deepsea.summarize results/probe_prior_features_1024 > "$R/probe_prior_features_1024/summary.md" ;;
    diagnose)
      "$PY" -m benchmarks.deepsea.diagnose_posterior --size 10 --episodes 100 --seed 0 --out "$R/diagnose_N10_s0.json"
      "$PY" -m benchmarks.deepsea.diagnose_posterior --size 10 --episodes 100 --seed 0 \
        --set policy_kwargs.prior_features=0 --out "$R/diagnose_N10_s0_no_prior.json" ;;
    prior_rank)
      rank() { "$PY" -m benchmarks.deepsea.prior_rank "$@"; }
      rank --size 10 --features 512 --tried 50 100 --out "$R/prior_rank_N10.json"
      rank --size 15 --features 512 1024 --tried 120 220 --out "$R/prior_rank_N15.json"
      rank --size 20 --features 512 1024 2048 --tried 200 380 --out "$R/prior_rank_N20.json"
      rank --size 20 --features 512 --tried 200 380 --scale 20 --out "$R/prior_rank_scale20_N20.json"
      rank --size 25 --features 512 1024 --tried 600 --scale 20 --out "$R/prior_rank_scale20_N25.json"
      rank --size 30 --features 1024 2048 --tried 880 --scale 20 --out "$R/prior_rank_scale20_N30.json" ;;
    round_cost)
      "$PY" -m benchmarks.deepsea.round_cost --size 20 --episodes 1000 --features 512 2048 --out "$R/round_cost_N20.json"
      "$PY" -m benchmarks.deepsea.round_cost --size 25 --episodes 1000 --features 1024 --out "$R/round_cost_N25.json" ;;
    suite)
      # shellcheck disable=SC2086  # the sizes are words
      for algo in ${SUITE_ALGOS:-dqn bayes_dqn-blr bayes_dqn-bbb}; do
        args=(--algo "$algo")
        case "$algo" in  # BayesianDQN's bbb and blr heads with bsuite's DQN settings (bayes_dqn_bsuite_dqn.yml)
          bayes_dqn-*) args=(--algo bayes_dqn --label "$algo" --yaml benchmarks/deepsea/bayes_dqn_bsuite_dqn.yml
                             --set "head='${algo#bayes_dqn-}'") ;;
        esac
        "$PY" -m benchmarks.deepsea.suite "${args[@]}" --sizes ${SUITE_SIZES:-10 20} --seeds 3 --cap "${SUITE_CAP:-2000}" \
          --margin 100 --max-wall-seconds "${SUITE_MAX_WALL:-330}" --out-dir "$R/suite"
      done ;;
    ensemble)
      # The settings these runs had: 10 members, prior scale 5 (the DeepSea sections before bsuite's 20 and 3), batch 32.
      ens=(--algo bayes_dqn --label bayes_dqn-ensemble_b32 --set batch_size=32 --set policy_kwargs.n_heads=10
           --set policy_kwargs.prior_scale=5.0 --cap 10000 --margin 100 --skip-existing --out-dir "$R/suite")
      # shellcheck disable=SC2086  # the sizes are words
      "$PY" -m benchmarks.deepsea.suite "${ens[@]}" --sizes ${ENSEMBLE_SIZES:-10 20 30} --seeds 3
      "$PY" -m benchmarks.deepsea.suite "${ens[@]}" --sizes 20 --seeds 3 --stochastic ;;
    ensemble_bsuite)
      # shellcheck disable=SC2086  # the sizes are words
      "$PY" -m benchmarks.deepsea.suite --algo bayes_dqn --label bayes_dqn-ensemble_bsuite --set policy_kwargs.n_heads=20 \
        --set policy_kwargs.prior_scale=3.0 --cap 10000 --margin 100 --max-wall-seconds "${BSUITE_MAX_WALL:-6900}" \
        --skip-existing --out-dir "$R/suite" --sizes ${BSUITE_SIZES:-10 20 30 40} --seeds 3 ;;
    diagnose_ensemble)
      mkdir -p "$R/diagnose_ensemble"
      diag=(--size 30 --seed 0 --episodes 3000 --every 250 --set batch_size=32 --set policy_kwargs.n_heads=10
            --set policy_kwargs.prior_scale=5.0)
      "$PY" -m benchmarks.deepsea.diagnose_ensemble "${diag[@]}" --out "$R/diagnose_ensemble/N30_s0.json"
      "$PY" -m benchmarks.deepsea.diagnose_ensemble "${diag[@]}" --set buffer_size=100000 \
        --out "$R/diagnose_ensemble/N30_s0_buffer100k.json"
      "$PY" -m benchmarks.deepsea.diagnose_ensemble "${diag[@]}" --set n_steps=5 --out "$R/diagnose_ensemble/N30_s0_nstep5.json" ;;
    *)
      echo "unknown part: $part (dqn psdrl summary ablation probe diagnose prior_rank round_cost suite ensemble" \
        "ensemble_bsuite diagnose_ensemble all)" >&2; exit 2 ;;
  esac
done

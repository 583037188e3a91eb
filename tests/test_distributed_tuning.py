"""Tuning across machines: several ``rl_zoo3.train -optimize`` workers share one Optuna study on a real PostgreSQL server.

The server is Debian's PostgreSQL, started for this module in a temporary directory on loopback with its own port and
database role (see :mod:`pg_server`), and stopped at the end. If it cannot be found or started, the tests here fail with
the reason: they are never skipped. ``.ci/run`` installs the server package and the ``distributed`` extra.

Each worker is a separate ``python -m rl_zoo3.train`` process in its own working directory, as on separate machines;
the study is created once beforehand with ``optuna create-study`` (workers racing to create the schema on an empty
database fail). Trials are tiny: PETS with a 16x16 ensemble and a narrowed search space, 50-step episodes, 100 steps,
one evaluation episode.

``--max-total-trials`` equals the number of workers here. rl-zoo3 checks the cap (counting running trials) after each
trial and then starts the next one, which is not atomic: with a larger cap, two workers finishing within milliseconds
of each other can both start one more trial. With the cap equal to the number of workers every worker decides only once,
when the other workers' trials are already running, so the count is exact.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import FrozenTrial, TrialState
from pg_server import PostgresServer, PostgresUnavailable, start_server

from zoo_plugins import hook, registry, samplers

pytestmark = pytest.mark.slow

N_WORKERS = 3
MAX_TOTAL_TRIALS = N_WORKERS
WORKER_TIMEOUT = 240.0
# Tiny trials: 50-step Pendulum episodes, 100 steps (one random episode, one planned), one evaluation episode
TINY_RUN = ["-n", "100", "--env-kwargs", "max_episode_steps:50", "--num-threads", "1"]
TINY_PARAMS = ["cem_iters:2", "n_epochs:1"]  # the tuned parameters come from the sampler
SPACE_MODULE = "sb3_bayes_distributed_space"
# Imported by every worker through --gym-packages (after rl-zoo3 and the plugin): narrows the search space (a documented
# way to restrict it) and tags each trial with the pid of the worker that runs it, so that the tests can tell workers apart.
SPACE_MODULE_SOURCE = """
import functools
import os

from rl_zoo3 import hyperparams_opt
from zoo_plugins import samplers

samplers.NET_ARCHS["tiny"] = [16, 16]
samplers.PETS_SEARCH_SPACE.update(
    net_arch=["tiny"], plan_horizon=[3, 5], popsize=[16, 20], elite_frac=(0.1, 0.25), n_particles=[5]
)
_sample = hyperparams_opt.HYPERPARAMS_SAMPLER["pets"]


@functools.wraps(_sample)
def _sample_and_tag(trial, *args, **kwargs):
    trial.set_user_attr("worker_pid", os.getpid())
    return _sample(trial, *args, **kwargs)


hyperparams_opt.HYPERPARAMS_SAMPLER["pets"] = _sample_and_tag
"""


# ---------------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server for this module; fails (never skips) with the reason when there is none."""
    try:
        import psycopg  # noqa: F401  (the driver: postgresql:// with SQLAlchemy >= 2.1, postgresql+psycopg://)
    except ImportError as exc:
        pytest.fail(f"the PostgreSQL driver is missing ({exc}): pip install -e '.[distributed]'", pytrace=False)
    started = time.monotonic()
    try:
        server = start_server()
    except PostgresUnavailable as exc:
        pytest.fail(f"cannot run a PostgreSQL test server: {exc}", pytrace=False)
    print(f"\n[postgres] {server.version} on 127.0.0.1:{server.port}, up in {time.monotonic() - started:.1f}s")
    try:
        yield server
    finally:
        server.stop()
    assert not server.root.exists()


@pytest.fixture()
def tune_dir(tmp_path, monkeypatch):
    monkeypatch.setitem(samplers.NET_ARCHS, "tiny", [16, 16])  # as the space module does in the workers
    (tmp_path / f"{SPACE_MODULE}.py").write_text(SPACE_MODULE_SOURCE)
    return tmp_path


# ----------------------------------------------------------------------------------------------------------- helpers
def _env(tune_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(hook.ENV_VAR, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tune_dir), env.get("PYTHONPATH")]))
    return env


def _optuna_cli(*args: str) -> str:
    """Run Optuna's command line (``optuna ARGS``); fail with its output if it fails."""
    optuna_cli = Path(sys.executable).with_name("optuna")
    command = [str(optuna_cli)] if optuna_cli.is_file() else [sys.executable, "-c", "from optuna.cli import main; main()"]
    proc = subprocess.run([*command, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"optuna {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _create_study(storage: str, study_name: str) -> None:
    """``optuna create-study``, once before the workers (it creates the schema on an empty database)."""
    _optuna_cli("create-study", "--storage", storage, "--study-name", study_name, "--direction", "maximize")


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen
    log: Path

    def output(self, n_chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n_chars:]


def _start_worker(tune_dir: Path, name: str, storage: str, study_name: str, max_total_trials: int) -> Worker:
    workdir = tune_dir / name  # a working directory of its own, as on a separate machine
    workdir.mkdir()
    log = workdir / "worker.log"
    command = [
        sys.executable, "-m", "rl_zoo3.train", "--algo", "pets", "--env", "Pendulum-v1", *TINY_RUN, "-f", "logs",
        "-optimize", "--max-total-trials", str(max_total_trials), "--storage", storage, "--study-name", study_name,
        "--sampler", "random", "--pruner", "none", "--n-evaluations", "1", "--eval-episodes", "1", "--no-optim-plots",
        "--gym-packages", SPACE_MODULE, "-params", *TINY_PARAMS,
    ]  # fmt: skip
    with log.open("w") as log_file:
        proc = subprocess.Popen(command, cwd=workdir, env=_env(tune_dir), stdout=log_file, stderr=subprocess.STDOUT)
    return Worker(name, proc, log)


def _wait(workers: list[Worker], timeout: float = WORKER_TIMEOUT) -> None:
    """Wait for the workers; kill them all and fail with their output if they take too long."""
    deadline = time.monotonic() + timeout
    try:
        for worker in workers:
            worker.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill_all(workers)
        logs = "\n".join(f"--- {w.name} (exit {w.proc.returncode}) ---\n{w.output()}" for w in workers)
        pytest.fail(f"workers did not finish within {timeout:.0f}s\n{logs}")


def _kill_all(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()


def _assert_succeeded(workers: list[Worker]) -> None:
    for worker in workers:
        assert worker.proc.returncode == 0, f"{worker.name} exited {worker.proc.returncode}\n{worker.output()}"


def _timeline(trials: list[FrozenTrial]) -> str:
    return "".join(
        f"\n  trial {t.number} {t.state.name:8} worker pid {t.user_attrs.get('worker_pid')}"
        f" {t.datetime_start:%H:%M:%S.%f} -> {'-' if t.datetime_complete is None else f'{t.datetime_complete:%H:%M:%S.%f}'}"
        for t in trials
    )


def _summary(label: str, trials: list[FrozenTrial], seconds: float) -> str:
    states = {state.name: n for state in TrialState if (n := sum(t.state == state for t in trials))}
    durations = [
        (t.datetime_complete - t.datetime_start).total_seconds() for t in trials if t.datetime_start and t.datetime_complete
    ]
    mean = sum(durations) / max(1, len(durations))
    head = f"[{label}] {len(trials)} trials {states}, mean trial {mean:.1f}s, workers done in {seconds:.1f}s"
    return head + _timeline(trials)


def _max_concurrency(trials: list[FrozenTrial]) -> int:
    """Largest number of these finished trials that were running at the same time."""
    spans = [(t.datetime_start, t.datetime_complete) for t in trials if t.datetime_start and t.datetime_complete]
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def _rerun_trial(tune_dir: Path, storage: str, study_name: str, trial: FrozenTrial) -> float:
    """``rl_zoo3.train --trial-id N`` with the same storage and study trains with that trial's hyperparameters."""
    started = time.monotonic()
    command = [
        sys.executable, "-m", "rl_zoo3.train", "--algo", "pets", "--env", "Pendulum-v1", *TINY_RUN, "-f", "best",
        "--eval-freq", "-1", "--storage", storage, "--study-name", study_name, "--trial-id", str(trial.number),
        "--gym-packages", SPACE_MODULE, "-params", *TINY_PARAMS,
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=tune_dir, env=_env(tune_dir), capture_output=True, text=True, timeout=180)
    output = f"--trial-id {trial.number}:\n{proc.stdout[-5000:]}\n--- stderr ---\n{proc.stderr[-5000:]}"
    assert proc.returncode == 0, output
    assert "Loading from Optuna study" in proc.stdout, output
    run_dir = tune_dir / "best" / "pets" / "Pendulum-v1_1"
    assert (run_dir / "Pendulum-v1.zip").is_file(), output
    config = dict(yaml.load((run_dir / "Pendulum-v1" / "config.yml").read_text(), Loader=yaml.UnsafeLoader))
    _assert_trial_hyperparams(config, trial)
    return time.monotonic() - started


def _assert_trial_hyperparams(hyperparams: dict, trial: FrozenTrial) -> None:
    """The hyperparameters (or saved config) are the trial's: converted, policy_kwargs merged onto the YAML's."""
    expected = samplers.convert_pets_params(trial.params)
    for key in ("learning_rate", "plan_horizon", "popsize", "num_elites", "n_particles", "propagation"):
        assert hyperparams[key] == expected[key], (key, hyperparams[key], expected[key])
    for key, value in expected["policy_kwargs"].items():
        assert hyperparams["policy_kwargs"][key] == value, key


# -------------------------------------------------------------------------------------------------------------- tests
def test_three_workers_share_a_postgresql_study(postgres: PostgresServer, tune_dir: Path):
    """Three workers, one study, ``--max-total-trials`` caps the total; the best trial re-runs with ``--trial-id``."""
    storage, study_name = postgres.url(), "pets-pendulum"  # plain postgresql:// (psycopg 3 with SQLAlchemy >= 2.1)
    started = time.monotonic()
    _create_study(storage, study_name)
    workers = [_start_worker(tune_dir, f"worker{i}", storage, study_name, MAX_TOTAL_TRIALS) for i in range(N_WORKERS)]
    try:
        _wait(workers)
    finally:
        _kill_all(workers)
    seconds = time.monotonic() - started
    _assert_succeeded(workers)

    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.trials
    summary = _summary(f"{N_WORKERS} workers", trials, seconds)
    print(summary)
    assert len(trials) == MAX_TOTAL_TRIALS, summary
    assert [t.number for t in trials] == list(range(MAX_TOTAL_TRIALS)), summary
    assert all(t.state == TrialState.COMPLETE for t in trials), summary
    # Trials ran in different workers at the same time, each with its own sampled parameters
    pids = {worker.proc.pid for worker in workers}
    ran_in = [t.user_attrs.get("worker_pid") for t in trials]
    assert set(ran_in) <= pids and len(set(ran_in)) >= 2, summary
    assert _max_concurrency(trials) >= 2, summary
    assert all(set(t.params) == set(samplers.PETS_SEARCH_SPACE) for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials), [t.params for t in trials]
    # rl-zoo3 records the command line and the default hyperparameters once, in the study
    assert "-optimize" in study.user_attrs["command"]
    for worker in workers:
        assert f"Loading hyperparameters from: {registry.find_yaml('pets')}" in worker.output(100_000)

    best = study.best_trial
    assert best.value == max(t.value for t in trials if t.value is not None)
    rerun_seconds = _rerun_trial(tune_dir, storage, study_name, best)
    print(f"[{N_WORKERS} workers] best trial {best.number}, re-run with --trial-id in {rerun_seconds:.1f}s")


def test_killed_worker_leaves_the_study_consistent(postgres: PostgresServer, tune_dir: Path):
    """SIGKILL one worker in the middle of a trial: the others finish, its trial is never reported complete."""
    storage, study_name = postgres.url("psycopg"), "pets-pendulum-fault"  # explicit driver: any SQLAlchemy 2.x
    started = time.monotonic()
    _create_study(storage, study_name)
    workers = [_start_worker(tune_dir, f"worker{i}", storage, study_name, MAX_TOTAL_TRIALS) for i in range(N_WORKERS)]
    victim, survivors = workers[0], workers[1:]
    try:
        deadline = time.monotonic() + WORKER_TIMEOUT
        killed: FrozenTrial | None = None
        while killed is None:
            assert time.monotonic() < deadline, f"the victim never ran a trial\n{victim.output()}"
            assert victim.proc.poll() is None, f"the victim exited {victim.proc.returncode} first\n{victim.output()}"
            running = optuna.load_study(study_name=study_name, storage=storage).get_trials(states=[TrialState.RUNNING])
            # Kill only once the victim's trial has sampled every parameter (the sampler writes them one at a time, so a
            # RUNNING trial seen early may still be missing some), and far from its end (seconds away).
            mine = [
                t
                for t in running
                if t.user_attrs.get("worker_pid") == victim.proc.pid and set(t.params) == set(samplers.PETS_SEARCH_SPACE)
            ]
            if mine:
                victim.proc.send_signal(signal.SIGKILL)
                victim.proc.wait()
                killed = mine[0]
            else:
                time.sleep(0.2)
        _wait(survivors)
    finally:
        _kill_all(workers)
    seconds = time.monotonic() - started
    assert victim.proc.returncode == -signal.SIGKILL
    _assert_succeeded(survivors)

    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.trials
    summary = _summary(f"{N_WORKERS} workers, 1 killed", trials, seconds)
    print(summary)
    # The killed trial was never told: it stays RUNNING (rl-zoo3 sets no heartbeat), with no value, never COMPLETE.
    # RUNNING trials count towards --max-total-trials, so the survivors stop at the cap.
    assert len(trials) == MAX_TOTAL_TRIALS, summary
    after = trials[killed.number]
    assert after.state == TrialState.RUNNING and after.value is None and after.datetime_complete is None, summary
    assert after.params == killed.params
    others = [t for t in trials if t.number != killed.number]
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["worker_pid"] != victim.proc.pid for t in others), summary

    # Recovery as in the README: mark the dead trial FAIL (not counted by the cap), start a replacement worker with the same
    # cap: it runs exactly the one missing trial
    _optuna_cli("tell", "--storage", storage, "--study-name", study_name, "--trial-number", str(killed.number), "--state=fail")
    assert study.trials[killed.number].state == TrialState.FAIL
    replacement = _start_worker(tune_dir, "replacement", storage, study_name, MAX_TOTAL_TRIALS)
    try:
        _wait([replacement])
    finally:
        _kill_all([replacement])
    _assert_succeeded([replacement])
    trials = study.trials
    summary = _summary("after a replacement worker", trials, time.monotonic() - started)
    print(summary)
    assert len(trials) == MAX_TOTAL_TRIALS + 1, summary
    assert trials[-1].state == TrialState.COMPLETE and trials[-1].user_attrs["worker_pid"] == replacement.proc.pid
    assert [t.state for t in trials].count(TrialState.COMPLETE) == MAX_TOTAL_TRIALS, summary
    frame = study.trials_dataframe()  # what rl-zoo3 writes as its report
    assert len(frame) == len(trials) and list(frame["state"]).count("FAIL") == 1
    best = study.best_trial
    assert best.number != killed.number and best.value == max(t.value for t in trials if t.value is not None)
    # --trial-id loads it (the code path of `rl_zoo3.train --trial-id N`, in-process here; the CLI run is tested above)
    from rl_zoo3.exp_manager import ExperimentManager

    manager = ExperimentManager(
        argparse.Namespace(), "pets", "Pendulum-v1", str(tune_dir / "best"), storage=storage, study_name=study_name,
        trial_id=best.number, hyperparams={"n_epochs": 1},
    )  # fmt: skip
    hyperparams, _ = manager.read_hyperparameters()
    _assert_trial_hyperparams(hyperparams, best)
    print(f"[fault] best trial {best.number} loaded with trial_id={best.number}")

"""Tuning across machines: several ``rl_zoo3.train -optimize`` workers share one Optuna study on a real PostgreSQL server.

The server is Debian's PostgreSQL, started for this module in a temporary directory on loopback with its own port and
database role (see :mod:`pg_server`); it is stopped at the end. If it cannot be found or started, every test here fails
with the reason: the tests are never skipped. ``.ci/run`` installs the server package and the ``distributed`` extra.

Each worker is a separate ``python -m rl_zoo3.train`` process in its own working directory, as on separate machines.
Trials are tiny (PETS with a 16x16 ensemble and a narrowed search space, 250 steps, one evaluation episode).
"""

from __future__ import annotations

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
from optuna.trial import TrialState

from pg_server import PostgresServer, PostgresUnavailable, start_server
from zoo_plugins import hook, registry, samplers

pytestmark = pytest.mark.slow

N_WORKERS = 3
MAX_TOTAL_TRIALS = 4
N_TIMESTEPS = 250
WORKER_TIMEOUT = 200.0
# Tiny PETS (the tuned parameters are overridden by the sampler)
TINY_PARAMS = ["cem_iters:2", "n_epochs:1", "plan_horizon:5", "popsize:20", "num_elites:4", "n_particles:5"]
SPACE_MODULE = "sb3_bayes_distributed_space"
# Imported by every worker through --gym-packages (after rl-zoo3 and the plugin): narrows the search space (a documented
# way to restrict it) and tags each trial with the pid of the worker that runs it, so that tests can tell workers apart.
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
        import psycopg  # noqa: F401  (the driver of postgresql:// URLs with SQLAlchemy >= 2.1)
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
def tune_dir(tmp_path):
    (tmp_path / f"{SPACE_MODULE}.py").write_text(SPACE_MODULE_SOURCE)
    return tmp_path


# ----------------------------------------------------------------------------------------------------------- helpers
def _env(tune_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(hook.ENV_VAR, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tune_dir), env.get("PYTHONPATH")]))
    return env


def _optimize_command(storage: str, study_name: str) -> list[str]:
    return [
        sys.executable, "-m", "rl_zoo3.train", "--algo", "pets", "--env", "Pendulum-v1", "-n", str(N_TIMESTEPS),
        "-f", "logs", "--num-threads", "1", "-optimize", "--max-total-trials", str(MAX_TOTAL_TRIALS),
        "--storage", storage, "--study-name", study_name, "--sampler", "random", "--pruner", "none",
        "--n-evaluations", "1", "--eval-episodes", "1", "--no-optim-plots", "--gym-packages", SPACE_MODULE,
        "-params", *TINY_PARAMS,
    ]  # fmt: skip


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen
    log: Path

    def output(self, n_chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n_chars:]


def _start_workers(tune_dir: Path, storage: str, study_name: str) -> list[Worker]:
    workers = []
    for index in range(N_WORKERS):
        workdir = tune_dir / f"worker{index}"  # one working directory each, as on separate machines
        workdir.mkdir()
        log = workdir / "worker.log"
        with log.open("w") as log_file:
            proc = subprocess.Popen(
                _optimize_command(storage, study_name),
                cwd=workdir,
                env=_env(tune_dir),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                text=True,
            )
        workers.append(Worker(index, proc, log))
    return workers


def _wait(workers: list[Worker], timeout: float = WORKER_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    try:
        for worker in workers:
            worker.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        for worker in workers:
            if worker.proc.poll() is None:
                worker.proc.kill()
                worker.proc.wait()
        logs = "\n".join(f"--- worker {w.index} (exit {w.proc.returncode}) ---\n{w.output()}" for w in workers)
        pytest.fail(f"workers did not finish within {timeout:.0f}s\n{logs}")


def _kill_all(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()


def _max_concurrency(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Largest number of these (finished) trials that ran at the same time."""
    events = sorted(
        [(t.datetime_start, 1) for t in trials] + [(t.datetime_complete, -1) for t in trials],
        key=lambda event: (event[0], event[1]),
    )
    running = best = 0
    for _, step in events:
        running += step
        best = max(best, running)
    return best


def _rerun_trial(tune_dir: Path, storage: str, study_name: str, trial: optuna.trial.FrozenTrial) -> None:
    """``rl_zoo3.train --trial-id N`` with the same storage and study: trains with the trial's hyperparameters."""
    command = [
        sys.executable, "-m", "rl_zoo3.train", "--algo", "pets", "--env", "Pendulum-v1", "-n", "200", "-f", "best",
        "--num-threads", "1", "--eval-freq", "-1", "--storage", storage, "--study-name", study_name,
        "--trial-id", str(trial.number), "--gym-packages", SPACE_MODULE, "-params", "cem_iters:2", "n_epochs:1",
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=tune_dir, env=_env(tune_dir), capture_output=True, text=True, timeout=180)
    output = proc.stdout[-6000:] + "\n--- stderr ---\n" + proc.stderr[-6000:]
    assert proc.returncode == 0, output
    assert "Loading from Optuna study" in proc.stdout, output
    config_file = tune_dir / "best" / "pets" / "Pendulum-v1_1" / "Pendulum-v1" / "config.yml"
    assert (config_file.parent.parent / "Pendulum-v1.zip").is_file(), output
    config = dict(yaml.load(config_file.read_text(), Loader=yaml.UnsafeLoader))
    expected = samplers.convert_pets_params(trial.params)
    for key in ("plan_horizon", "popsize", "num_elites", "n_particles", "propagation", "learning_rate"):
        assert config[key] == expected[key], (key, config[key], expected[key])
    for key, value in expected["policy_kwargs"].items():
        assert config["policy_kwargs"][key] == value, key


def _summary(label: str, trials: list[optuna.trial.FrozenTrial], pids: dict[int, int], seconds: float) -> str:
    per_worker = {index: sum(t.user_attrs.get("worker_pid") == pid for t in trials) for index, pid in pids.items()}
    states = {state.name: sum(t.state == state for t in trials) for state in TrialState}
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials if t.datetime_complete]
    mean = sum(durations) / max(1, len(durations))
    return (
        f"[{label}] {len(trials)} trials {({k: v for k, v in states.items() if v})}, per worker {per_worker},"
        f" mean trial {mean:.1f}s, workers done in {seconds:.1f}s"
    )


# -------------------------------------------------------------------------------------------------------------- tests
def test_three_workers_share_a_postgresql_study(postgres: PostgresServer, tune_dir: Path):
    """Three workers, one study, ``--max-total-trials`` caps the total; the best trial re-runs with ``--trial-id``."""
    storage, study_name = postgres.url(), "pets-pendulum"  # plain postgresql:// (psycopg 3 with SQLAlchemy >= 2.1)
    started = time.monotonic()
    workers = _start_workers(tune_dir, storage, study_name)
    try:
        _wait(workers)
    finally:
        _kill_all(workers)
    seconds = time.monotonic() - started
    for worker in workers:
        assert worker.proc.returncode == 0, f"worker {worker.index} exited {worker.proc.returncode}\n{worker.output()}"

    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.trials
    pids = {worker.index: worker.proc.pid for worker in workers}
    print(_summary("3 workers", trials, pids, seconds))
    assert len(trials) == MAX_TOTAL_TRIALS, [(t.number, t.state.name) for t in trials]
    assert [t.number for t in trials] == list(range(MAX_TOTAL_TRIALS))
    assert all(t.state == TrialState.COMPLETE for t in trials), [(t.number, t.state.name) for t in trials]
    # Every worker ran trials, several at the same time, each with its own sampled parameters
    assert {t.user_attrs.get("worker_pid") for t in trials} == set(pids.values())
    assert _max_concurrency(trials) >= 2
    assert all(set(t.params) == set(samplers.PETS_SEARCH_SPACE) for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials), [t.params for t in trials]
    # rl-zoo3 records the command line and the default hyperparameters once, in the study
    assert "-optimize" in study.user_attrs["command"]
    for worker in workers:
        assert f"Loading hyperparameters from: {registry.find_yaml('pets')}" in worker.output(100_000)

    best = study.best_trial
    assert best.value == max(t.value for t in trials)
    _rerun_trial(tune_dir, storage, study_name, best)


def test_killed_worker_leaves_the_study_consistent(postgres: PostgresServer, tune_dir: Path):
    """SIGKILL one worker in the middle of a trial: the others finish, its trial is never reported complete."""
    storage, study_name = postgres.url("psycopg"), "pets-pendulum-fault"  # explicit driver: any SQLAlchemy 2.x
    started = time.monotonic()
    workers = _start_workers(tune_dir, storage, study_name)
    victim = workers[0]
    killed_trial: int | None = None
    try:
        deadline = time.monotonic() + WORKER_TIMEOUT
        while killed_trial is None:
            assert time.monotonic() < deadline, f"the victim never ran a trial\n{victim.output()}"
            assert victim.proc.poll() is None, f"the victim exited {victim.proc.returncode} first\n{victim.output()}"
            try:
                running = optuna.load_study(study_name=study_name, storage=storage).get_trials(states=[TrialState.RUNNING])
            except KeyError:  # the study does not exist yet
                running = []
            mine = [t for t in running if t.user_attrs.get("worker_pid") == victim.proc.pid]
            if mine:
                time.sleep(0.5)  # well inside the trial (training has started), far from its end (several seconds)
                victim.proc.send_signal(signal.SIGKILL)
                victim.proc.wait()
                killed_trial = mine[0].number
            else:
                time.sleep(0.2)
        _wait(workers[1:])
    finally:
        _kill_all(workers)
    seconds = time.monotonic() - started
    assert victim.proc.returncode == -signal.SIGKILL
    for worker in workers[1:]:
        assert worker.proc.returncode == 0, f"worker {worker.index} exited {worker.proc.returncode}\n{worker.output()}"

    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.trials
    print(_summary("1 of 3 workers killed", trials, {w.index: w.proc.pid for w in workers}, seconds))
    states = {t.number: t.state for t in trials}
    # The killed trial was never told: it stays RUNNING (no heartbeat configured), never COMPLETE
    assert states[killed_trial] == TrialState.RUNNING, states
    assert trials[killed_trial].value is None and trials[killed_trial].datetime_complete is None
    # RUNNING counts towards --max-total-trials (as in rl-zoo3), so the survivors stop at the cap
    assert len(trials) == MAX_TOTAL_TRIALS, states
    assert [t.number for t in trials] == list(range(MAX_TOTAL_TRIALS))
    others = [t for t in trials if t.number != killed_trial]
    assert all(t.state == TrialState.COMPLETE for t in others), states
    # Readable and consistent: the report rl-zoo3 writes, the best trial, and re-running it
    frame = study.trials_dataframe()
    assert len(frame) == MAX_TOTAL_TRIALS and (frame["state"] == "RUNNING").sum() == 1
    best = study.best_trial
    assert best.number != killed_trial and best.state == TrialState.COMPLETE
    assert best.value == max(t.value for t in others)
    _rerun_trial(tune_dir, storage, study_name, best)

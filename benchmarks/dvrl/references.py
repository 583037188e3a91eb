"""Reference returns for the belief benchmark: how much a filter *can* add at each observation-noise level.

Per environment id (Mountain Hike and the noisy-position CartPole at every registered noise level, on the settings of
their sections of ``hyperparams/dvrl.yml``: ``env_kwargs`` such as the action cost), three hand-made controllers, each
the best of a parametric family on a grid (chosen on ``--search-episodes`` seeded episodes, then evaluated on
``--episodes`` other seeded episodes, so the reported mean is not the maximum of noisy estimates):

* oracle: the family acting on the *true* state (``info["position"]`` / ``info["state"]``): what a perfect belief
  allows, within the family;
* memoryless: the same family acting on the current noisy observation only: what no memory and no belief gives;
* two_frames (CartPole only): the family on the current and the previous noisy observation (velocities by finite
  differences): what a memory of one step gives, exact at noise 0 and worse as the noise grows;
* blind: the best open-loop action sequence of its family, which never looks at an observation (the same at every
  noise level);
* random: uniform random actions.

The gap between oracle and memoryless is the room a filter has; a learner below blind has not learned to use its
observations at all. The families are lower bounds on the best policies (a better controller may exist), so the
numbers are references, not optima.

Mountain Hike family (oracle and memoryless): walk at full speed towards a waypoint ``(d, d)`` on the diagonal while
``x + y < 2 d`` (a memoryless switch: it reads only the current position estimate), then towards a target ``g`` with
gain ``k`` (action ``clip_norm(k (g - p), 0.05)``) and stand still within ``r`` of it. Blind: a fixed heading at full
speed for ``n`` steps, then stand still (``open_loop_reference.py``'s walk). CartPole family: push right iff
``w . features > 0``, with features the true state (oracle) or the two noisy positions (memoryless); blind: a periodic
push pattern.

    python -m benchmarks.dvrl.references --out benchmarks/dvrl/results/belief/references.json
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

import sb3_bayes.envs  # noqa: F401  (registers the ids)
from benchmarks.common import Timer, hyperparams_path, load_zoo_section, result_record, write_result
from sb3_bayes.envs.mountain_hike import MOUNTAIN_HIKE_NOISE_LEVELS, mountain_hike_env_id
from sb3_bayes.envs.noisy_position import NOISY_CARTPOLE_NOISE_LEVELS, noisy_cartpole_env_id

#: A policy of this module: (step in the episode, observation, info of the last reset/step) -> action.
Policy = Callable[[int, np.ndarray, dict[str, Any]], Any]
SEARCH_SEED_OFFSET = 0  # grid search on seeds 0, 1, ...
EVAL_SEED_OFFSET = 10_000  # the reported means on seeds 10000, 10001, ... (never searched on)
MH_MAX_STEP = 0.05  # Mountain Hike's action bound (MountainHikeEnv.max_action_norm)
FULL_SPEED_GAIN = 1e9  # a gain that the norm clip turns into a full-speed step


def episode_return(env: gym.Env, seed: int, policy: Policy) -> float:
    """
    The return of one seeded episode.

    :param env: The environment (with its ``TimeLimit``).
    :param seed: Seed of ``env.reset``.
    :param policy: The policy.
    :return: The undiscounted return.
    """
    obs, info = env.reset(seed=seed)
    total, t, done = 0.0, 0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy(t, obs, info))
        total += float(reward)
        t += 1
        done = terminated or truncated
    return total


def returns(env: gym.Env, policy: Policy, seeds: Iterable[int]) -> np.ndarray:
    """:return: The returns of ``policy`` on the episodes seeded ``seeds``."""
    return np.array([episode_return(env, seed, policy) for seed in seeds])


def best_of(
    env: gym.Env, family: Callable[..., Policy], grid: Iterable[tuple], search_episodes: int, episodes: int
) -> dict[str, Any]:
    """
    The best member of a policy family on a grid of parameters.

    :param env: The environment.
    :param family: Parameters -> policy.
    :param grid: Parameter tuples.
    :param search_episodes: Episodes (seeds 0, 1, ...) on which the parameters are chosen.
    :param episodes: Episodes (seeds 10000, ...) on which the chosen policy is evaluated.
    :return: ``mean``, ``std`` and ``sem`` of the evaluation returns and the chosen ``params``.
    """
    search_seeds = range(SEARCH_SEED_OFFSET, SEARCH_SEED_OFFSET + search_episodes)
    scored = [(float(returns(env, family(*params), search_seeds).mean()), params) for params in grid]
    best_params = max(scored, key=lambda item: item[0])[1]
    final = returns(env, family(*best_params), range(EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + episodes))
    return dict(
        mean=float(final.mean()),
        std=float(final.std()),
        sem=float(final.std() / np.sqrt(len(final))),
        params=[p if not isinstance(p, tuple) else list(p) for p in best_params],
    )


def uniform_random(env: gym.Env, episodes: int) -> dict[str, Any]:
    """:return: The mean and std return of uniform random actions (the action space seeded 0)."""
    env.action_space.seed(0)
    final = returns(env, lambda t, obs, info: env.action_space.sample(), range(EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + episodes))
    return dict(mean=float(final.mean()), std=float(final.std()), sem=float(final.std() / np.sqrt(len(final))))


# Mountain Hike ------------------------------------------------------------------------------------------------------


def fixed_walk(angle_deg: float, n_steps: int) -> Policy:
    """Walk at full speed with heading ``angle_deg`` for ``n_steps`` steps, then stand still (cost 0)."""
    move = MH_MAX_STEP * np.array([np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))])
    return lambda t, obs, info: move if t < n_steps else np.zeros(2)


def fixed_walk_grid() -> list[tuple[int, int]]:
    """Headings 20-70 degrees (5 apart) and 20-54 steps (2 apart): ``open_loop_reference.py``'s grid."""
    return list(itertools.product(range(20, 71, 5), range(20, 56, 2)))


def waypoint_walk(
    position: Callable[[np.ndarray, dict[str, Any]], np.ndarray],
) -> Callable[[float, tuple[float, float], float, float], Policy]:
    """
    The Mountain Hike controller family, reading the position through ``position(obs, info)``.

    :param position: The true position (oracle) or the observation divided by its scale (memoryless).
    :return: ``(d, g, k, r) -> policy``: towards ``(d, d)`` while ``x + y < 2 d``, then ``clip_norm(k (g - p), 0.05)``,
        zero within ``r`` of ``g``.
    """

    def family(d: float, target: tuple[float, float], gain: float, radius: float) -> Policy:
        goal = np.asarray(target)
        waypoint = np.array([d, d])

        def policy(t: int, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
            p = position(obs, info)
            if p[0] + p[1] < 2 * d:
                step = FULL_SPEED_GAIN * (waypoint - p)  # clipped to full speed below
            else:
                if np.linalg.norm(goal - p) < radius:
                    return np.zeros(2)
                step = gain * (goal - p)
            norm = np.linalg.norm(step)
            return step * (MH_MAX_STEP / norm) if norm > MH_MAX_STEP else step

        return policy

    return family


def waypoint_grid() -> list[tuple[float, tuple[float, float], float, float]]:
    """Waypoints on the diagonal (-1: none), targets near the ridge's best point (0.81, 0.51), gains, stop radii."""
    return list(
        itertools.product(
            (-1.0, 0.0, 0.2, 0.3, 0.4, 0.5, 0.6),
            ((0.81, 0.51), (0.75, 0.55), (0.7, 0.5)),
            (0.3, FULL_SPEED_GAIN),
            (0.0, 0.05, 0.1, 0.2),
        )
    )


def mountain_hike_references(
    noise_levels: Sequence[float], env_kwargs: dict[str, Any], search_episodes: int, episodes: int
) -> dict[str, dict[str, Any]]:
    """
    :param noise_levels: Observation noise levels (registered ids).
    :param env_kwargs: Keyword arguments of the environment (the YAML's ``env_kwargs``).
    :param search_episodes: Episodes per grid point.
    :param episodes: Episodes of the final evaluation.
    :return: Per env id: ``oracle``, ``memoryless``, ``blind`` and ``random`` (mean, std, sem, params).
    """
    noiseless = gym.make(mountain_hike_env_id(0.0), **env_kwargs)
    scale = noiseless.unwrapped.observation_scale  # type: ignore[attr-defined]
    shared = dict(
        oracle=best_of(
            noiseless, waypoint_walk(lambda obs, info: info["position"]), waypoint_grid(), search_episodes, episodes
        ),
        blind=best_of(noiseless, fixed_walk, fixed_walk_grid(), search_episodes, episodes),
        random=uniform_random(noiseless, episodes),
    )
    table = {}
    for noise in noise_levels:
        env = gym.make(mountain_hike_env_id(noise), **env_kwargs)
        memoryless = best_of(env, waypoint_walk(lambda obs, info: obs / scale), waypoint_grid(), search_episodes, episodes)
        table[mountain_hike_env_id(noise)] = dict(shared, memoryless=memoryless)
    return table


# Noisy-position CartPole ---------------------------------------------------------------------------------------------


def linear_push(features: Callable[[np.ndarray, dict[str, Any]], np.ndarray]) -> Callable[..., Policy]:
    """:return: ``(*weights) -> policy`` pushing right iff ``weights . features(obs, info) > 0``."""

    def family(*weights: float) -> Policy:
        w = np.asarray(weights)
        return lambda t, obs, info: int(float(w @ features(obs, info)) > 0)

    return family


def two_frame_push(*weights: float) -> Policy:
    """
    Push right iff ``weights . (o_x, o_x - o'_x, o_theta, o_theta - o'_theta) > 0``, with ``o'`` the previous
    observation (the current one at the first step): velocities by finite differences, a memory of one step.
    """
    w = np.asarray(weights)
    previous: list[np.ndarray] = []

    def policy(t: int, obs: np.ndarray, info: dict[str, Any]) -> int:
        if t == 0:
            previous[:] = [obs]
        difference = obs - previous[0]
        previous[0] = obs
        return int(float(w @ np.array([obs[0], difference[0], obs[1], difference[1]])) > 0)

    return policy


def periodic_push(*pattern: int) -> Policy:
    """:return: The open-loop policy repeating ``pattern`` (0 left, 1 right)."""
    return lambda t, obs, info: pattern[t % len(pattern)]


def cartpole_references(
    noise_levels: Sequence[float], env_kwargs: dict[str, Any], search_episodes: int, episodes: int
) -> dict[str, dict[str, Any]]:
    """The references of the noisy-position CartPole ids (see :func:`mountain_hike_references`)."""
    exact = gym.make(noisy_cartpole_env_id(0.0), **env_kwargs)
    # Oracle: weights on (x, x_dot, theta, theta_dot), theta's fixed to 1 (only the sign of w . s matters).
    oracle_grid = list(itertools.product((0.0, 0.05, 0.1), (0.0, 0.1, 0.3), (1.0,), (0.1, 0.3, 0.5, 1.0)))
    blind_grid = [p for n in range(2, 7) for p in itertools.product((0, 1), repeat=n) if 0 < sum(p) < n]
    shared = dict(
        oracle=best_of(exact, linear_push(lambda obs, info: info["state"]), oracle_grid, search_episodes, episodes),
        blind=best_of(exact, periodic_push, blind_grid, search_episodes, episodes),
        random=uniform_random(exact, episodes),
    )
    # Memoryless: weights on the two noisy scaled positions (x / 2.4, theta / theta_max), theta's fixed to 1.
    memoryless_grid = [(w, 1.0) for w in (-0.5, -0.2, -0.1, 0.0, 0.1, 0.2, 0.5)]
    # Two frames: theta_dot ~ 50 (theta_t - theta_{t-1}) (tau = 0.02 s), so the oracle's 0.3 theta_dot is ~15 differences.
    two_frame_grid = list(itertools.product((0.0, 0.1), (0.0, 2.0, 5.0), (1.0,), (1.0, 2.0, 3.0, 10.0, 20.0)))
    table = {}
    for noise in noise_levels:
        env = gym.make(noisy_cartpole_env_id(noise), **env_kwargs)
        memoryless = best_of(env, linear_push(lambda obs, info: obs), memoryless_grid, search_episodes, episodes)
        two_frames = best_of(env, two_frame_push, two_frame_grid, search_episodes, episodes)
        table[noisy_cartpole_env_id(noise)] = dict(shared, memoryless=memoryless, two_frames=two_frames)
    return table


def yaml_env_kwargs(env_id: str) -> dict[str, Any]:
    """:return: The ``env_kwargs`` of the env's section of ``hyperparams/dvrl.yml`` (empty without one)."""
    _, section = load_zoo_section(hyperparams_path("dvrl.yml"), env_id, evaluate=False)
    kwargs = section.get("env_kwargs") or {}
    return dict(eval(kwargs) if isinstance(kwargs, str) else kwargs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=200, help="evaluation episodes of each chosen controller")
    p.add_argument("--search-episodes", type=int, default=40, help="episodes per grid point of the search")
    p.add_argument("--mh-noise", type=float, nargs="*", default=list(MOUNTAIN_HIKE_NOISE_LEVELS))
    p.add_argument("--cartpole-noise", type=float, nargs="*", default=list(NOISY_CARTPOLE_NOISE_LEVELS))
    p.add_argument("--out", default=None)
    args = p.parse_args()
    mh_kwargs = yaml_env_kwargs(mountain_hike_env_id(0.0))
    cartpole_kwargs = yaml_env_kwargs(noisy_cartpole_env_id(0.0))
    with Timer() as timer:
        table = {}
        if args.mh_noise:
            table.update(mountain_hike_references(args.mh_noise, mh_kwargs, args.search_episodes, args.episodes))
        if args.cartpole_noise:
            table.update(cartpole_references(args.cartpole_noise, cartpole_kwargs, args.search_episodes, args.episodes))
    for env_id, refs in table.items():
        print(env_id, {name: round(ref["mean"], 1) for name, ref in refs.items()}, flush=True)
    record = result_record(
        benchmark="dvrl",
        experiment="references",
        algorithm=None,
        env=None,
        seed=None,
        config=dict(
            episodes=args.episodes,
            search_episodes=args.search_episodes,
            mountain_hike_env_kwargs=mh_kwargs,
            cartpole_env_kwargs=cartpole_kwargs,
        ),
        results=dict(references=table),
        cpu_seconds=round(timer.cpu_seconds, 2),
        wall_seconds=round(timer.wall_seconds, 2),
    )
    write_result(args.out, record)


if __name__ == "__main__":
    main()

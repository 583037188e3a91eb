"""
Where the optimal path breaks: train PSDRL on DeepSea (the YAML's settings, optionally overridden) until a few
episodes after the goal was first reached (or the budget), then walk the all-right path with the current model sample
and print, per step, the look-ahead of both moves: sampled reward, value of the predicted next state, Q, and which
cell the predicted next latent is nearest to (does the model know where "right" leads?).

python -m benchmarks.deepsea.diagnose_path --size 15 --seed 0 --episodes 500 --after-success 3 [--set key=value]
"""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.deepsea.exploration import DeepSeaRecorder, tried_pairs
from benchmarks.deepsea.run_psdrl import build_model, load_settings, run_arguments


def main() -> None:
    p = run_arguments()
    p.add_argument("--after-success", type=int, default=3)
    args = p.parse_args()
    model = build_model(args.size, args.seed, load_settings(args.size, args.set))
    rec = DeepSeaRecorder(args.size, args.episodes, args.after_success)
    model.learn(total_timesteps=args.size * args.episodes, callback=rec)
    print(f"stopped after {len(rec.returns)} episodes, first goal {rec.first}, goals {sum(rec.successes)}")
    policy, buffer = model.policy, model.replay_buffer
    assert buffer is not None
    # Every distinct observation in the replay, named by its cell (the observation is the one-hot cell).
    frames = np.concatenate([e.observations for e in buffer.all_episodes()])
    frames = np.unique(frames.reshape(len(frames), -1), axis=0)
    cell_of = frames.argmax(axis=1)
    env = model.env.envs[0].unwrapped  # type: ignore[union-attr]
    counts: dict[int, int] = {}
    for e in buffer.all_episodes():
        for c in e.observations.reshape(len(e.observations), -1).argmax(axis=1):
            counts[int(c)] = counts.get(int(c), 0) + 1
    with torch.no_grad():
        latents_all = policy.encode(torch.as_tensor(frames).view(len(frames), *buffer.obs_shape))
        obs, _ = env.reset()
        hidden = policy.initial_hidden(1)
        print("step  visits  right  Q_right  Q_left  r_right  r_left  V'_right  V'_left  alive_r  alive_l  next(right)->cell")
        for k in range(args.size):
            o = torch.as_tensor(obs[None])
            processed = policy.preprocess(o)
            latent = policy.autoencoder.encode(processed)
            lookahead = policy.lookahead(latent, hidden, policy.prior_projection(processed))
            next_latent, next_hidden, reward, not_terminal = lookahead
            q = policy.action_values(next_latent, next_hidden, reward, not_terminal)[0]
            values = policy.value(torch.cat([next_latent, next_hidden], dim=-1)).squeeze(-1)[0]
            right = env.right_action(k, k)
            left = 1 - right
            distances = (latents_all - next_latent[0, right]).norm(dim=1)
            order = distances.argsort()
            row, col = divmod(int(cell_of[order[0]]), args.size)
            row2, col2 = divmod(int(cell_of[order[1]]), args.size)
            cell = int(np.asarray(obs).reshape(-1).argmax())
            greedy = "yes" if q[right] > q[left] else "NO "
            print(
                f"{k:4d}  {counts.get(cell, 0):6d}  {greedy:>5}  {q[right]:7.3f}  {q[left]:6.3f}"
                f"  {reward[0, right]:7.3f}  {reward[0, left]:6.3f}  {values[right]:8.3f}  {values[left]:7.3f}"
                f"  {int(not_terminal[0, right]):7d}  {int(not_terminal[0, left]):7d}"
                f"  ({row},{col}) {distances[order[0]]:.3f}, ({row2},{col2}) {distances[order[1]]:.3f}"
            )
            obs, _, terminated, _, _ = env.step(right)
            hidden = next_hidden[:, right]
            if terminated:
                break
        # The untried (cell, action) pairs at visited cells: how optimistic is the current sample about them, and does
        # the greedy policy of the sample go to one?
        tried = tried_pairs(list(buffer.all_episodes()))
        untried = [(int(c), a) for c in np.unique(cell_of) for a in range(2) if (int(c), a) not in tried]
        frame_of = {int(c): f for c, f in zip(cell_of, frames)}
        if untried:
            o = torch.as_tensor(np.stack([frame_of[c] for c, _ in untried])).view(len(untried), *buffer.obs_shape)
            one_hot = policy.one_hot(torch.tensor([a for _, a in untried]))
            processed = policy.preprocess(o)
            latent = policy.autoencoder.encode(processed)
            step = policy.transition.step(latent, one_hot, policy.initial_hidden(len(untried)))
            features = policy.bayesian_features(step.features, policy.prior_projection(processed), one_hot)
            std = policy.posterior.predictive_variance(features)[:, -1].sqrt()
            sampled = policy.predict_sampled(features)[1]
            print(
                f"untried pairs at visited cells: {len(untried)} (of {2 * len(cell_of)}), reward std mean {std.mean():.3f}"
                f" min {std.min():.3f}, sampled reward max {sampled.max():.3f} mean {sampled.mean():.3f}"
            )
            print("untried:", [divmod(c, args.size) + (a,) for c, a in untried][:40])
        obs, _ = env.reset()
        hidden, path = policy.initial_hidden(1), []
        for _ in range(args.size):
            cell = int(np.asarray(obs).reshape(-1).argmax())
            actions, hidden = policy.act(torch.as_tensor(obs[None]), hidden, deterministic=True)
            path.append((cell, int(actions[0])))
            obs, _, terminated, _, _ = env.step(int(actions[0]))
            if terminated:
                break
        print("greedy path of the sample:", [divmod(c, args.size) for c, _ in path])
        print("untried pairs on it:", [divmod(c, args.size) + (a,) for c, a in path if (c, a) in set(untried)])


if __name__ == "__main__":
    main()

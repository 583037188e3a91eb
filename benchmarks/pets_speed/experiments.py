"""Prototypes of speed-ups for our PETS planner, measured against the current code (no sb3_bayes file is edited:
the variants monkeypatch one policy instance at runtime).

  python -m benchmarks.pets_speed.experiments [--rounds 6]

Variants (all exact: same outputs as the current code up to float summation order, checked below):
  bmm+add_ row-chunk 256 (earlier)   the trunk of ensemble.py sha 5634dac8e5fa, for reference.
  member_major   GaussianEnsembleMLP._trunk as a loop over members of 2-D mm/addmm on row chunks of --chunk rows,
                 instead of row chunks of 256 over all 5 members with bmm. Per member the working set (160 KB weights
                 + chunk activations) stays in the 2 MB L2; the bmm chunk touches 800 KB of weights per layer plus
                 5 x 256 x 200 x 4 B in/out activations.
  step0_dedup    At t = 0 every particle of a candidate that is bound to the same member has the same input
                 (obs, a_0): evaluate the network on one row per (member, candidate) and repeat the output
                 (saves (P/E - 1)/(P/E) of the first of H steps: 3/4 of 1/15 = 5% of network work here).
Prints per-plan CPU seconds (min / median over interleaved rounds) and the speed-up against the current code.
"""

from __future__ import annotations

import argparse
import statistics
import time
import types
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.pets_speed import bench_ours
from benchmarks.pets_speed.timing import CONFIG

warnings.filterwarnings("ignore")


def member_major_trunk(net, chunk: int):
    layers = net.linear_layers

    def _trunk(self, x):
        if torch.is_grad_enabled():
            return original_trunk(x)
        E, N, _ = x.shape
        out = torch.empty(E, N, layers[-1].weight.shape[-1], dtype=x.dtype)
        for m in range(E):
            for s in range(0, N, chunk):
                h = x[m, s : s + chunk]
                for layer in layers[:-1]:
                    h = torch.mm(h, layer.weight[m])
                    h.add_(layer.bias[m])
                    F.silu(h, inplace=True)
                torch.addmm(layers[-1].bias[m], h, layers[-1].weight[m], out=out[m, s : s + chunk])
        return out

    original_trunk = net._trunk
    return types.MethodType(_trunk, net)


def bmm_rowchunk_trunk(net, chunk: int = 256):
    """The earlier sb3_bayes trunk (ensemble.py sha 5634dac8e5fa): 256-row chunks over all members, th.bmm, then
    in-place bias add_ and SiLU. Kept as a reference point."""
    layers = net.linear_layers

    def _trunk(self, x):
        outs = []
        for s in range(0, x.shape[1], chunk):
            h = x[:, s : s + chunk]
            for layer in layers[:-1]:
                h = torch.bmm(h, layer.weight)
                h.add_(layer.bias)
                F.silu(h, inplace=True)
            outs.append(layers[-1](h))
        return torch.cat(outs, dim=1)

    return types.MethodType(_trunk, net)


def step0_dedup_predict(policy, horizon: int, per_member: int):
    """Wrap DynamicsEnsemble.predict: on the first step of each rollout, evaluate one row per candidate."""
    dyn = policy.dynamics
    original = dyn.predict
    counter = {"t": 0}

    def predict(self, obs, action):
        t = counter["t"]
        counter["t"] = (t + 1) % horizon
        if t != 0 or per_member == 1:
            return original(obs, action)
        p = original(obs[:, ::per_member], action[:, ::per_member])
        rep = lambda z: None if z is None else z.repeat_interleave(per_member, dim=1)  # noqa: E731
        return type(p)(rep(p.mean), rep(p.variance), rep(p.termination_logit))

    return types.MethodType(predict, dyn)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--chunk", type=int, default=1000)
    args = p.parse_args()
    torch.set_num_threads(1)
    model, _ = bench_ours.build_model("float32", 0)
    policy = model.policy
    net = policy.dynamics.network
    cfg = CONFIG
    per_member = cfg["n_particles"] // cfg["ensemble_size"]
    base_trunk, base_predict = net._trunk, policy.dynamics.predict
    mm_trunk = member_major_trunk(net, args.chunk)
    dedup_predict = step0_dedup_predict(policy, cfg["plan_horizon"], per_member)

    variants = {
        "current": (base_trunk, base_predict),
        "bmm+add_ row-chunk 256 (earlier)": (bmm_rowchunk_trunk(net), base_predict),
        f"member_major(chunk={args.chunk})": (mm_trunk, base_predict),
        "step0_dedup": (base_trunk, dedup_predict),
        "member_major + step0_dedup": (mm_trunk, dedup_predict),
    }
    obs = torch.tensor([[0.3, 0.95, 0.5]])
    cand = torch.rand(1, cfg["popsize"], cfg["plan_horizon"], 1) * 4 - 2
    with torch.no_grad():
        values = {}
        for name, (tr, pr) in variants.items():
            net._trunk, policy.dynamics.predict = tr, pr
            torch.manual_seed(3)
            values[name] = policy.evaluate_action_sequences(obs, cand)
        for name, v in values.items():
            print(f"check {name:30s} max |value - current| = {(v - values['current']).abs().max().item():.2e}")

    o = np.array([0.3, 0.95, 0.5], dtype=np.float32)
    times = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, (tr, pr) in variants.items():
            net._trunk, policy.dynamics.predict = tr, pr
            policy.plan_warm_start = torch.zeros(0)  # a fresh warm start: plan() starts from the bound midpoint
            t0 = time.process_time()
            policy.predict(o)
            times[name].append(time.process_time() - t0)
    base = statistics.median(times["current"])
    for name, v in times.items():
        med = statistics.median(v)
        print(f"{name:32s} CPU s/plan: min {min(v):.3f}  median {med:.3f}  (x{med / base:.3f} of current)")


if __name__ == "__main__":
    main()

"""The loop the sampling planners (CEM, iCEM, MPPI) share: draw action sequences around a
per-problem Gaussian (white or temporally coloured noise), roll all B x S of them out in one
batched call per model step, refit the Gaussian. Gradient-free, so immune to sharp model
Jacobians, but the samples needed grow with the dimension T * A of the plan."""

from __future__ import annotations

import functools
import math
import time
from typing import Any, Sequence

import torch

from grasp.models.base import WorldModel
from grasp.planners.base import PlanInfo, Planner, PlanResult, sample_normal
from grasp.planners.noise import NoiseStreams
from grasp.planners.schedules import check_range


@functools.lru_cache(maxsize=64)
def _spectrum(T: int, beta: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """The amplitude (T // 2 + 1,) of each frequency bin of 1/f^beta noise over T steps, on
    `device`, and the standard deviation it gives each entry. Computed once per (T, beta, device)
    on the CPU, so drawing the noise needs no device-to-host read."""
    freqs = torch.fft.rfftfreq(T)
    freqs[0] = freqs[1]  # the constant component gets the weight of the lowest frequency
    scale = freqs ** (-beta / 2.0)
    # Variance of each entry: the first bin (and the last when T is even) enters with its real
    # part once; every other bin enters as 2 Re(X e^{i theta}), variance 4 |scale|^2.
    weight = torch.full_like(scale, 4.0)
    weight[0] = 1.0
    if T % 2 == 0:
        weight[-1] = 1.0
    return scale.to(device), math.sqrt(float((weight * scale**2).sum()) / T)


def colored_noise(shape: Sequence[int], beta: float, generator: torch.Generator | NoiseStreams | None,
                  device: torch.device) -> torch.Tensor:
    """Gaussian noise (..., T, A) with power spectrum ~ 1/f^beta along T and unit variance
    per entry: beta = 0 is white; beta = 2 (iCEM's default) gives smooth, correlated actions."""
    *lead, T, A = shape
    if beta == 0 or T == 1:
        return sample_normal(tuple(shape), generator, device)
    scale, std = _spectrum(int(T), float(beta), torch.device(device))
    re = sample_normal((*lead, A, len(scale)), generator, device)
    im = sample_normal((*lead, A, len(scale)), generator, device)
    signal = torch.fft.irfft(torch.complex(re * scale, im * scale), n=T, norm="ortho")
    return (signal / std).transpose(-1, -2)


class SamplingPlanner(Planner):
    """Iterate: sample S sequences per problem (sample 0 is the current mean, so a good mean
    is never lost to bad draws), score them by the true rollout cost, refit. Subclasses
    implement :meth:`refit`."""

    wide_calls = True

    def __init__(
        self,
        world_model: WorldModel,
        horizon: int,
        iterations: int = 6,
        samples: int = 256,
        init_std: float = 0.5,
        min_std: float = 0.05,
        noise_beta: float = 0.0,
        return_best: bool = False,
        **base: Any,
    ) -> None:
        super().__init__(world_model, horizon, **base)
        self.iterations = check_range("iterations", iterations, 1, integer=True)
        self.samples = check_range("samples", samples, 1, integer=True)
        self.init_std = check_range("init_std", init_std, 0.0)
        self.min_std = check_range("min_std", min_std, 0.0)
        self.noise_beta = check_range("noise_beta", noise_beta, 0.0, 5.0)
        self.return_best = bool(return_best)

    def sample_count(self, iteration: int) -> int:
        return self.samples

    def refit(self, actions: torch.Tensor, cost: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """New (mean, std) (N, T, A) from samples (N, S, T, A) and their costs (N, S)."""
        raise NotImplementedError

    def carried(self, actions: torch.Tensor, cost: torch.Tensor) -> torch.Tensor | None:
        """Samples (N, K, T, A) to put back into the next iteration's draw (iCEM's kept elites)."""
        return None

    @torch.no_grad()
    def _optimize(self, state0, goal, actions, states, generator) -> PlanResult:
        start = time.perf_counter()
        N, T, A = actions.shape
        mean = actions
        std = torch.full_like(mean, max(self.init_std, self.min_std))
        best, best_cost = mean.clone(), torch.full((N,), math.inf, device=self.device)
        carried: torch.Tensor | None = None  # elites kept from the last iteration (iCEM)
        seen_nonfinite = torch.zeros(N, dtype=torch.bool, device=self.device)
        curves: dict[str, list] = {"best_cost": [], "mean_cost": [], "std": [], "time": []}
        snapshot_at, snapshots = self.snapshot_iterations(self.iterations), []
        for k in range(self.iterations):
            S = self.sample_count(k)
            noise = colored_noise((N, S, T, A), self.noise_beta, generator, self.device)
            noise[:, 0] = 0.0
            draws = self.clamp_actions(mean[:, None] + std[:, None] * noise)
            if carried is not None:
                draws = torch.cat([draws[:, : S - carried.shape[1]], carried], dim=1)
            cost = self.score(state0, goal, draws)  # (N, S)
            broken = ~torch.isfinite(cost)  # samples the model sent to NaN/Inf: never elites, never best
            seen_nonfinite |= broken.any(dim=1)
            cost = cost.masked_fill(broken, math.inf)
            low, idx = cost.min(dim=1)
            better = low < best_cost
            lowest = draws.gather(1, idx[:, None, None, None].expand(N, 1, T, A))[:, 0]  # no host-side index
            best = torch.where(better[:, None, None], lowest, best)
            best_cost = torch.minimum(low, best_cost)
            carried = self.carried(draws, cost)
            mean, std = self.refit(draws, cost, mean, std)
            mean, std = self.clamp_actions(mean), std.clamp_min(self.min_std)
            curves["best_cost"].append(best_cost.clone())
            curves["mean_cost"].append(cost[:, 0])
            curves["std"].append(std.flatten(1).mean(1))
            curves["time"].append(time.perf_counter() - start)
            if k in snapshot_at:  # what the plan this iteration would return leads to
                snapshots.append(self.predicted_states(state0, best if self.return_best else mean))
            if self.tolerance > 0 and bool((best_cost <= self.tolerance).all()):
                break
        info = PlanInfo(iterations=len(curves["time"]))
        info.add_curves(True, **{key: torch.stack(v).cpu() for key, v in curves.items() if key != "time"})
        info.add_curves(False, time=torch.tensor(curves["time"]))
        info.add_per_problem(nonfinite=seen_nonfinite.cpu())
        info.add_snapshots(snapshots, sorted(snapshot_at))
        return PlanResult(best if self.return_best else mean, info)

    def score(self, state0: torch.Tensor, goal: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """True rollout cost of every sample: one batched rollout over N * S sequences."""
        N, S, T, A = draws.shape
        s0 = state0[:, None].expand(N, S, -1).reshape(N * S, -1)
        flat = draws.reshape(N * S, T, A)
        states = self.world_model.rollout(s0, flat)
        cost = self.goal_cost(states[:, -1].view(N, S, -1), goal[:, None])
        return cost + self.disagreement_cost(s0, states, flat).view(N, S) if self.disagreement_weight else cost

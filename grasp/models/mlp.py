"""Residual MLP world model on normalised states (the state-based model of the foundation)."""

from __future__ import annotations

import contextlib
from typing import Iterator, NamedTuple, Sequence

import torch
from torch import nn

from grasp.models.base import WorldModel
from grasp.models.frames import StateFrame
from grasp.models.losses import rollout_loss, step_weights

ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}
NORMS = ("none", "layer")


def mlp(width: int, out: int, hidden_dim: int, depth: int, activation: str, norm: str = "none") -> nn.Sequential:
    """depth hidden layers of hidden_dim (each Linear, optional LayerNorm, activation), then a
    linear output."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, hidden_dim), *([nn.LayerNorm(hidden_dim)] if norm == "layer" else []),
                   ACTIVATIONS[activation]()]
        width = hidden_dim
    layers.append(nn.Linear(width, out))
    return nn.Sequential(*layers)


class MLPWorldModel(WorldModel):
    """s' = s + delta_mean + delta_std * net([s, a]) with s normalised by dataset statistics, or,
    with a task's `frame`, s' = frame.apply(s, motion_mean + motion_std * net([features, a])) with
    the features and actions seen in the state's own frame (grasp.models.frames).

    Predicting a standardised residual keeps the network's targets O(1) whatever the task's
    units, and makes the identity (no motion) the easy default. Trained on open-loop rollouts of
    `pred_steps` steps (grasp.models.losses), one step by default; `state_loss_weights` weighs
    each state entry's error (a task's success may look at a few entries only).
    """

    def __init__(self, state_dim: int, action_dim: int, hidden_dim: int = 256, depth: int = 3,
                 activation: str = "silu", state_margin: float | None = 0.5, pred_steps: int = 1,
                 rollout_discount: float = 1.0, norm: str = "none", frame: StateFrame | None = None,
                 substeps: int = 1, state_loss_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"world_model.activation={activation!r}: allowed {sorted(ACTIVATIONS)}")
        if norm not in NORMS:
            raise ValueError(f"world_model.norm={norm!r}: allowed {list(NORMS)}")
        if depth < 1 or hidden_dim < 1:
            raise ValueError(f"world_model.depth and hidden_dim must be >= 1, got {depth}, {hidden_dim}")
        if state_margin is not None and not state_margin >= 0:
            raise ValueError(f"world_model.state_margin={state_margin}: allowed null (no bound) or a number >= 0")
        if frame is not None and (not isinstance(frame, StateFrame) or frame.state_dim != state_dim):
            raise ValueError(f"world_model.frame={type(frame).__name__} is not a StateFrame of this task's "
                             f"{state_dim}-D states (grasp.models.frames)")
        if not (isinstance(substeps, int) and substeps >= 1 and action_dim % substeps == 0):
            raise ValueError(f"world_model.substeps={substeps!r}: allowed an integer >= 1 that splits the "
                             f"{action_dim}-D action into equal pieces (one stacked env action each)")
        weights = torch.ones(state_dim) if state_loss_weights is None else torch.as_tensor(
            list(state_loss_weights), dtype=torch.float32)
        if weights.shape != (state_dim,) or not bool((weights >= 0).all()) or not float(weights.sum()) > 0:
            raise ValueError(f"world_model.state_loss_weights={state_loss_weights!r}: allowed null or {state_dim} "
                             f"weights >= 0, not all 0 (one per state entry)")
        # the training loss divides each entry's error by its residual std over sqrt(weight), so a
        # weight w counts that entry's squared error w times (weights scaled to mean 1, the lr's scale)
        self.register_buffer("loss_weights", weights * state_dim / weights.sum(), persistent=False)
        self.state_dim, self.action_dim = int(state_dim), int(action_dim)
        # a stacked action splits into one piece per sub-step
        self.substeps = int(substeps)
        self.sub_action_dim = action_dim // substeps
        self.state_margin = None if state_margin is None else float(state_margin)
        self.pred_steps = int(pred_steps)
        self.register_buffer("step_weights", step_weights(self.pred_steps, float(rollout_discount)), persistent=False)
        self.frame = frame
        if frame is None:
            self.net = mlp(state_dim + self.sub_action_dim, state_dim, hidden_dim, depth, activation, norm)
        else:
            self.net = mlp(frame.feature_dim + self.sub_action_dim, frame.motion_dim, hidden_dim, depth, activation, norm)
            for name, size in (("feature", frame.feature_dim), ("motion", frame.motion_dim)):
                self.register_buffer(f"{name}_mean", torch.zeros(size))
                self.register_buffer(f"{name}_std", torch.ones(size))
        for name in ("state_mean", "delta_mean"):
            self.register_buffer(name, torch.zeros(state_dim))
        for name in ("state_std", "delta_std"):
            self.register_buffer(name, torch.ones(state_dim))
        # the box predicted states are held in (normalised units), from the training data
        self.register_buffer("state_low", torch.full((state_dim,), -torch.inf))
        self.register_buffer("state_high", torch.full((state_dim,), torch.inf))
        # the folded network while `frozen` holds the weights fixed (planning)
        self._folded: FoldedLayers | None = None

    def prepare(self, states: torch.Tensor, actions: torch.Tensor) -> None:
        self.fit_normalization(states[:, :-1].reshape(-1, self.state_dim), states[:, 1:].reshape(-1, self.state_dim))

    def training_loss(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted standardised errors of the open-loop rollout of (B, K + 1, D) state windows
        (K = pred_steps; K = 1: the one-step residual error)."""
        with torch.no_grad():
            states = self.encode(obs)
        loss, per_step = rollout_loss(self.advance, states[:, 0], actions, states[:, 1:], self.step_weights,
                                      scale=self.delta_std / self.loss_weights.sqrt())
        return loss, ({f"rollout{len(per_step)}_step_mse": per_step[-1]} if len(per_step) > 1 else {})

    @torch.no_grad()
    def fit_normalization(self, states: torch.Tensor, next_states: torch.Tensor, eps: float = 1e-6) -> None:
        """Set statistics from raw transitions (N, D): states first, then residuals in that space."""
        self.state_mean.copy_(states.mean(0))
        self.state_std.copy_(states.std(0).clamp_min(eps))
        delta = self.encode(next_states) - self.encode(states)
        self.delta_mean.copy_(delta.mean(0))
        self.delta_std.copy_(delta.std(0).clamp_min(eps))
        if self.frame is not None:
            for name, values in (("feature", self.frame.features(states)),
                                 ("motion", self.frame.relative(states, next_states))):
                getattr(self, f"{name}_mean").copy_(values.mean(0))
                getattr(self, f"{name}_std").copy_(values.std(0).clamp_min(eps))
        if self.state_margin is not None:
            seen = self.encode(torch.cat([states, next_states]))
            low, high = seen.min(0).values, seen.max(0).values
            self.state_low.copy_(low - self.state_margin * (high - low))
            self.state_high.copy_(high + self.state_margin * (high - low))

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.state_mean) / self.state_std

    def decode(self, state: torch.Tensor) -> torch.Tensor:
        return state * self.state_std + self.state_mean

    def predict_delta(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The network's standardised residual (frameless models: the one-step target's space)."""
        return self.net(torch.cat([state, action], dim=-1))

    def advance(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """One unbounded model step (what training rolls out): `substeps` network steps, each
        taking its piece of a stacked action."""
        if self.substeps == 1:
            return self._substep(state, action, self.delta_mean, self.delta_std)
        mean, std = self.delta_mean / self.substeps, self.delta_std / self.substeps
        for piece in action.split(self.sub_action_dim, dim=-1):
            state = self._substep(state, piece, mean, std)
        return state

    def _substep(self, state: torch.Tensor, action: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        if self.frame is None:
            return state + mean + std * self.predict_delta(state, action)
        raw = self.decode(state)
        features = (self.frame.features(raw) - self.feature_mean) / self.feature_std
        motion = self.net(torch.cat([features, self.frame.local_action(raw, action)], dim=-1))
        return self.encode(self.frame.apply(raw, self.motion_mean + self.motion_std * motion))

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """One model step, held inside the data's box widened by `state_margin` of its size: an
        open-loop rollout that leaves the data cannot compound its error without bound."""
        layers = self._folded
        if layers is None:
            return self._in_box(self.advance(state, action))
        if state.dim() == 2:
            return self._folded_step(state, action, layers)
        return self._folded_step(state.reshape(-1, self.state_dim), action.reshape(-1, self.action_dim),
                                 layers).view(state.shape)  # addmm takes matrices

    def _folded_step(self, state: torch.Tensor, action: torch.Tensor, layers: "FoldedLayers") -> torch.Tensor:
        h = layers.activations[0](torch.addmm(layers.first[1], torch.cat([state, action], dim=-1), layers.first[0]))
        for (weight, bias), activation in zip(layers.hidden, layers.activations[1:]):
            h = activation(torch.addmm(bias, h, weight))
        return self._in_box(state + torch.addmm(layers.out[1], h, layers.out[0]))

    def _in_box(self, state: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(state, self.state_high), self.state_low)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Inside, `step` runs the folded network (`folded_layers`), where the model allows it."""
        with super().frozen():
            outer = self._folded
            self._folded = outer or self.folded_layers()
            try:
                yield
            finally:
                self._folded = outer

    def folded_layers(self) -> "FoldedLayers | None":
        """The network with the residual's std and mean folded into its output layer and every
        weight laid out for addmm: the same step in fewer ops, and ops are what a serial
        rollout's small calls cost (docs/benchmarks/README.md). None where the step is not one
        network step on the normalised state itself (a frame, sub-steps, LayerNorm)."""
        if self.frame is not None or self.substeps > 1 or any(isinstance(m, nn.LayerNorm) for m in self.net):
            return None
        with torch.no_grad():
            linears = [m for m in self.net if isinstance(m, nn.Linear)]
            first, out = linears[0], linears[-1]
            return FoldedLayers(
                first=(first.weight.t(), first.bias),
                hidden=[(m.weight.t(), m.bias) for m in linears[1:-1]],
                activations=[m for m in self.net if not isinstance(m, nn.Linear)],
                out=((out.weight * self.delta_std[:, None]).t(), out.bias * self.delta_std + self.delta_mean))


class FoldedLayers(NamedTuple):
    """MLPWorldModel's network as `folded_layers` lays it out: weights transposed for addmm."""

    first: tuple[torch.Tensor, torch.Tensor]
    hidden: list[tuple[torch.Tensor, torch.Tensor]]
    activations: list[nn.Module]
    out: tuple[torch.Tensor, torch.Tensor]

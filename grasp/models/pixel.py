"""World model on 64x64 RGB frames: a conv encoder to a small latent, a residual MLP that steps
the latent, and a conv decoder back to the current frame (pictures, and the anti-collapse term).

Planners only ever see the latent: they encode the start and goal observations once (no
gradient) and optimise actions through `step`, so the encoder is out of their gradient path.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from grasp.models.base import WorldModel
from grasp.models.losses import rollout_loss, step_weights
from grasp.models.mlp import ACTIVATIONS, mlp
from grasp.models.observation import FrameStackObserver
from grasp.models.readout import apply_linear_readout


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


class PixelWorldModel(WorldModel):
    """z = BN(enc(last `history` frames)), z' = z + net([z, a]), decode(z) = the current frame.

    Observations are (..., history * 3, S, S) uint8 frame stacks (or floats in [0, 255]), the
    oldest frame first and the current one in the last 3 channels: one frame shows where the
    agent is, the frames before it how fast it moves.

    The latent ends in a BatchNorm1d without affine parameters. In training it normalises each
    latent dimension by the batch, so the prediction loss cannot be lowered by shrinking the
    latents, and every dimension is O(1) for the planners' costs; its running statistics become
    the data's, and in eval mode (planning, validation) they are a fixed affine map, so an
    observation always encodes to the same latent whatever else is in the batch. The running
    statistics lag a moving encoder by ~10 batches, so they are the final encoder's once the
    learning rate has decayed (the trainer's cosine schedule ends at zero); mid-training
    validation at a high learning rate sees latents shifted from the training ones.

    Training (`training_loss`) predicts the encoded future with an open-loop latent rollout
    against stop-gradient targets. With such targets a prediction loss alone is minimised by a
    constant latent; the BatchNorm rules out a constant but not latents that vary in ways easy to
    predict and useless for planning, so the reconstruction of the current frame, with gradients
    into the encoder, is the regulariser that keeps latents informative.
    """

    latent = True

    def __init__(self, state_dim: int, action_dim: int, latent_dim: int = 32, frame_size: int = 64,
                 history: int = 2, channels: int = 32, hidden_dim: int = 256, depth: int = 2,
                 activation: str = "silu", recon_weight: float = 1.0, pred_steps: int = 3,
                 rollout_discount: float = 1.0) -> None:
        super().__init__()
        checks = [
            ("latent_dim", latent_dim, latent_dim >= 1, "an integer >= 1"),
            ("frame_size", frame_size, frame_size >= 16 and _is_power_of_two(frame_size),
             "a power of two >= 16 (16, 32, 64, ...)"),
            ("history", history, history >= 1, "an integer >= 1"),
            ("channels", channels, channels >= 1, "an integer >= 1"),
            ("depth", depth, depth >= 1, "an integer >= 1"),
            ("hidden_dim", hidden_dim, hidden_dim >= 1, "an integer >= 1"),
            ("activation", repr(activation), activation in ACTIVATIONS, str(sorted(ACTIVATIONS))),
            ("recon_weight", recon_weight, recon_weight >= 0, "a number >= 0"),  # False for NaN too
            ("pred_steps", pred_steps, pred_steps >= 1, "an integer >= 1"),
        ]
        for key, value, ok, allowed in checks:
            if not ok:
                raise ValueError(f"world_model.{key}={value}: allowed {allowed}")
        self.task_state_dim = int(state_dim)
        self.state_dim, self.action_dim = int(latent_dim), int(action_dim)
        self.latent_dim, self.frame_size, self.history = int(latent_dim), int(frame_size), int(history)
        self.recon_weight, self.pred_steps = float(recon_weight), int(pred_steps)
        self.register_buffer("step_weights", step_weights(self.pred_steps, float(rollout_discount)), persistent=False)

        # encoder: stride-2 convs halve the frame until it is 4x4, doubling the width each time
        widths = [channels * 2**i for i in range(self.frame_size.bit_length() - 3)]  # log2(S / 4) layers
        layers: list[nn.Module] = []
        width = 3 * self.history
        for out in widths:
            layers += [nn.Conv2d(width, out, 4, stride=2, padding=1), nn.SiLU()]
            width = out
        self.encoder = nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * 16, self.latent_dim))
        # eps far below torch's 1e-5: frames of one scene differ in a few pixels, so raw latents
        # vary by ~1e-3 and eps=1e-5 would swamp their variance (latents shrunk well below unit
        # variance, a scale the prediction loss could shrink further by shrinking the raw ones)
        self.latent_norm = nn.BatchNorm1d(self.latent_dim, eps=1e-8, affine=False)

        # decoder: the mirror image, ending in 3 channels (the current frame) through a sigmoid
        self._top_width = width
        self.decoder_in = nn.Linear(self.latent_dim, width * 16)
        layers = []
        for out in [*reversed(widths[:-1]), 3]:
            layers += [nn.SiLU(), nn.ConvTranspose2d(width, out, 4, stride=2, padding=1)]
            width = out
        self.decoder = nn.Sequential(*layers, nn.Sigmoid())

        # dynamics: residual MLP on [z, a]
        self.net = mlp(self.latent_dim + self.action_dim, self.latent_dim, hidden_dim, depth, activation)
        #: (latent_dim + 1, task state_dim) linear readout of the task's state, fitted after
        #: training (grasp.models.readout) and saved with the checkpoint; None until then
        self.state_readout: torch.Tensor | None = None

    def observer(self) -> FrameStackObserver:
        return FrameStackObserver(self.frame_size, self.history)

    # ---- the planner's interface -----------------------------------------------------------
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """(..., history * 3, S, S) frame stacks -> (..., latent_dim) latents."""
        expected = (3 * self.history, self.frame_size, self.frame_size)
        if tuple(obs.shape[-3:]) != expected:
            raise ValueError(f"PixelWorldModel.encode expects (..., {expected[0]}, {expected[1]}, {expected[2]}) "
                             f"frame stacks (world_model.history={self.history}, "
                             f"world_model.frame_size={self.frame_size}), got {tuple(obs.shape)}")
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *expected).float() / 255.0 - 0.5
        return self._normalise(self.encoder(x)).reshape(*lead, self.latent_dim)

    def _normalise(self, h: torch.Tensor) -> torch.Tensor:
        """The latent BatchNorm; a single observation in training mode has no batch statistics,
        so it gets the running ones (and leaves them as they are)."""
        if self.training and h.shape[0] < 2:
            norm = self.latent_norm
            return F.batch_norm(h, norm.running_mean, norm.running_var, training=False, eps=norm.eps)
        return self.latent_norm(h)

    @torch.no_grad()
    def calibrate(self, obs: torch.Tensor) -> None:
        """Refit the latent BatchNorm's statistics to the current encoder on `obs` (N, C, S, S):
        its running averages lag the encoder by ~10 batches, which skews eval-mode latents."""
        x = obs.reshape(-1, *obs.shape[-3:]).float() / 255.0 - 0.5
        features = torch.cat([self.encoder(chunk) for chunk in x.split(256)])
        self.latent_norm.running_mean.copy_(features.mean(0))
        self.latent_norm.running_var.copy_(features.var(0))

    def decode(self, state: torch.Tensor) -> torch.Tensor:
        """(..., latent_dim) -> (..., 3, S, S) current frame in [0, 1]."""
        lead = state.shape[:-1]
        h = self.decoder_in(state.reshape(-1, self.latent_dim)).reshape(-1, self._top_width, 4, 4)
        return self.decoder(h).reshape(*lead, 3, self.frame_size, self.frame_size)

    def task_state(self, state: torch.Tensor) -> torch.Tensor | None:
        """The task state read out of latents (..., latent_dim) by the fitted linear readout."""
        return None if self.state_readout is None else apply_linear_readout(self.state_readout, state)

    def prediction_gap(self, predicted, seen, reached, distance):
        """The RMS over latent entries between predicted latents and the encoded frames seen."""
        return (predicted - self.encode(seen)).pow(2).mean(-1).sqrt().cpu().numpy()

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """z' = z + net([z, a]); leading dims of z and a broadcast."""
        lead = torch.broadcast_shapes(state.shape[:-1], action.shape[:-1])
        state = state.expand(*lead, state.shape[-1])
        return state + self.net(torch.cat([state, action.expand(*lead, action.shape[-1])], dim=-1))

    # ---- training ---------------------------------------------------------------------------
    @staticmethod
    def _current_frames(obs: torch.Tensor) -> torch.Tensor:
        """The last frame of each stack as floats in [0, 1] (the decoder's target)."""
        return obs[..., -3:, :, :].float() / 255.0

    def training_loss(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """obs (B, K+1, history*3, S, S), actions (B, K, A): latent prediction MSE of the K-step
        rollout from z_0 against stop-gradient z_1..z_K (grasp.models.losses, the steps weighted
        by rollout_discount), plus recon_weight * reconstruction MSE of
        every current frame. All K+1 observations go through the encoder in one batch, so the
        BatchNorm normalises inputs and targets alike."""
        if obs.shape[1] != actions.shape[1] + 1:
            raise ValueError(f"training_loss needs K+1 observations for K actions, got {obs.shape[1]} "
                             f"and {actions.shape[1]}")
        latents = self.encode(obs)
        pred, _ = rollout_loss(self.step, latents[:, 0], actions, latents[:, 1:].detach(), self.step_weights)
        recon = torch.mean((self.decode(latents) - self._current_frames(obs)) ** 2)
        loss = pred + self.recon_weight * recon
        return loss, {"loss": loss.detach(), "latent_pred_mse": pred.detach(), "recon_mse": recon.detach()}

    @torch.no_grad()
    def validation_metrics(self, episodes, rollout_len: int) -> dict[str, float]:
        """On each held-out episode's first window of L = min(rollout_len, episode length) steps,
        in eval mode: latent one-step MSE, latent MSE after an open-loop rollout of L steps from
        the first observation, and the reconstruction MSE of every current frame."""
        span = min(int(rollout_len), episodes.length)
        index = torch.arange(episodes.episodes, device=episodes.states.device)
        time = torch.arange(span + 1, device=index.device).expand(len(index), -1)
        obs, actions = episodes.observations(index[:, None].expand_as(time), time), episodes.actions[:, :span]
        was_training = self.training
        self.eval()
        try:
            latents = self.encode(obs)
            one_step = torch.mean((self.step(latents[:, :-1], actions) - latents[:, 1:]) ** 2)
            final = self.rollout(latents[:, 0], actions)[:, -1]
            rollout = torch.mean((final - latents[:, -1]) ** 2)
            recon = torch.mean((self.decode(latents) - self._current_frames(obs)) ** 2)
        finally:
            self.train(was_training)
        values = torch.stack([one_step, rollout, recon]).tolist()
        return dict(zip(("val/one_step_mse", f"val/rollout{span}_mse", "val/recon_mse"), values))

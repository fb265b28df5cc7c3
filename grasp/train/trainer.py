"""World-model pretraining on windows of episodes, validation, resumable training state, and checkpoints."""

from __future__ import annotations

import logging
import math
import pickle
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import hydra
import torch
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from grasp.config import NONFINITE_POLICIES
from grasp.errors import ConfigError
from grasp.models.base import WorldModel
from grasp.train.dataset import TrajectoryDataset
from grasp.precision import AUTOCAST_DTYPES, native_bf16_cpu
from grasp.utils import atomic_path

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
#: with train.nonfinite=skip, this many non-finite batches in a row stop training all the same
MAX_SKIPPED_IN_A_ROW = 50


class NonFiniteTraining(FloatingPointError):
    """Training met NaN/Inf; nothing non-finite was saved (the message says what was kept)."""


def _gradients_finite(model: torch.nn.Module) -> torch.Tensor:
    """One device-side flag: every gradient entry finite."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return torch.stack([torch.isfinite(g).all() for g in grads]).all() if grads else torch.tensor(True)


def training_autocast(precision: str, device: torch.device):
    """The training loss's autocast for train.precision: bf16 runs the forward pass's matmuls in
    bfloat16 while the weights, the optimiser and validation stay fp32 (torch.autocast)."""
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(f"train.precision={precision!r}: allowed {list(AUTOCAST_DTYPES)}")
    dtype = AUTOCAST_DTYPES[precision]
    if dtype is None:
        return nullcontext()
    if device.type == "cpu" and not native_bf16_cpu():
        log.warning("train: train.precision=%s on a CPU without native bf16: emulated, slower than fp32", precision)
    return torch.autocast(device.type, dtype=dtype)


def build_world_model(model_cfg: DictConfig | dict, state_dim: int, action_dim: int) -> WorldModel:
    return hydra.utils.instantiate(model_cfg, state_dim=state_dim, action_dim=action_dim)


class Episodes:
    """The dataset's episodes as tensors on the model's device, cut into training windows of
    `model.pred_steps + 1` observations, each made by the model's observer (state vectors, or
    frame stacks with the episode's first frame repeated before it starts)."""

    def __init__(self, model: WorldModel, data: TrajectoryDataset) -> None:
        device = model.device
        self.observer = model.observer()
        frames = getattr(data, "frames", None)
        self.states = torch.as_tensor(data.states, device=device)
        self.actions = torch.as_tensor(data.actions, device=device)
        self.frames = None if self.observer.frame_size is None or frames is None else torch.as_tensor(frames, device=device)
        self.window = int(model.pred_steps)
        self.episodes, self.length = self.actions.shape[:2]
        if self.window > self.length:
            raise ValueError(f"world_model.pred_steps={self.window} exceeds data.episode_len={self.length}")
        self.observations(torch.zeros(1, dtype=torch.long, device=device), torch.zeros(1, dtype=torch.long, device=device))

    def observations(self, episode: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """Observations at (episode, time) index tensors of any equal shape."""
        return self.observer.from_dataset(self.states, self.frames, episode, time)

    def windows(self, episode: torch.Tensor, start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        steps = torch.arange(self.window + 1, device=start.device)
        time = start[:, None] + steps
        return self.observations(episode[:, None].expand_as(time), time), self.actions[episode[:, None], time[:, :-1]]

    def calibration_sample(self, size: int = 1024, seed: int = 0) -> torch.Tensor:
        """A fixed sample of observations for `WorldModel.calibrate` (its own RNG, so the
        training batches do not depend on it)."""
        generator = torch.Generator().manual_seed(seed)
        flat = torch.randint(0, self.episodes * (self.length + 1), (size,), generator=generator).to(self.states.device)
        return self.observations(flat // (self.length + 1), flat % (self.length + 1))

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniform windows; with one-step windows the draw is one flat transition index."""
        return self.windows_at(self.draw(batch_size, 1, generator)[0])

    def draw(self, batch_size: int, steps: int, generator: torch.Generator) -> torch.Tensor:
        """The flat window indices (steps, batch_size) of `steps` batches, drawn on the CPU
        generator and moved in one copy: the same numbers as `steps` draws of one batch, on
        every device, with one host-to-device transfer instead of one a step."""
        starts = self.length - self.window + 1
        flat = torch.randint(0, self.episodes * starts, (steps, batch_size), generator=generator)
        return flat.to(self.states.device, non_blocking=True)

    def windows_at(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        starts = self.length - self.window + 1
        return self.windows(flat // starts, flat % starts)


class BatchIndices:
    """The training batches' window indices, drawn BLOCK steps at a time (grasp.train.trainer.
    Episodes.draw): one host-to-device copy per block, not a step. Blocks end at the steps where
    the training state is saved, so the saved generator state is the one a step-by-step draw
    leaves there and a resumed run draws the same batches."""

    BLOCK = 256

    def __init__(self, episodes: Episodes, batch_size: int, generator: torch.Generator, save_every: int) -> None:
        self.episodes, self.batch_size, self.generator, self.save_every = episodes, batch_size, generator, save_every
        self.block, self.first = None, 0

    def next(self, step: int) -> torch.Tensor:
        """Indices (batch_size,) of training step `step` (steps come in order, from 1)."""
        if self.block is None or step - self.first >= self.block.shape[0]:
            end = step + self.BLOCK
            if self.save_every:  # the block ends with the next step whose state is saved
                end = min(end, -(-step // self.save_every) * self.save_every + 1)
            self.block, self.first = self.episodes.draw(self.batch_size, end - step, self.generator), step
        return self.block[step - self.first]


@torch.no_grad()
def held_out_metrics(model: WorldModel, val: TrajectoryDataset | Episodes, rollout_len: int) -> dict[str, float]:
    """The model's own `validation_metrics` on the held-out episodes, in eval mode (give them as
    Episodes to put them on the device once for every validation of a training run)."""
    was_training = model.training
    model.eval()
    try:
        return model.validation_metrics(val if isinstance(val, Episodes) else Episodes(model, val), int(rollout_len))
    finally:
        model.train(was_training)


def selection_error(metrics: dict[str, float]) -> float:
    """The held-out open-loop rollout error (`val/rollout<L>_mse`) training selects weights on."""
    for key, value in metrics.items():
        if key.startswith("val/rollout") and key.endswith("_mse"):
            return float(value)
    raise KeyError(f"validation metrics hold no val/rollout<L>_mse entry: {sorted(metrics)}")


class Selection:
    """The best validation so far (lowest rollout error) and its weights, for train.select=best
    and train.patience; its state travels with the resumable training state."""

    def __init__(self, select: str, patience: int, saved: dict[str, Any] | None = None) -> None:
        self.select, self.patience = select, int(patience)
        saved = saved or {}
        self.error, self.step = saved.get("error", math.inf), saved.get("step")
        self.weights, self.stale = saved.get("weights"), saved.get("stale", 0)

    def update(self, model: torch.nn.Module, step: int, metrics: dict[str, float]) -> bool:
        """Record a validation; True when training should stop early."""
        error = selection_error(metrics)
        if error < self.error:
            self.error, self.step, self.stale = error, step, 0
            if self.select == "best":
                self.weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            self.stale += 1
        return bool(self.patience) and self.stale >= self.patience

    def finish(self, model: torch.nn.Module, history: list[dict[str, float]]) -> dict[str, float] | None:
        """Load the selected weights (select=best) and return their validation's metrics."""
        if self.select != "best" or self.weights is None:
            return history[-1] if history else None
        model.load_state_dict(self.weights)
        chosen = next(m for m in history if m["train/step"] == self.step)
        return {**chosen, "train/selected_step": self.step}

    def state(self) -> dict[str, Any]:
        return {"error": self.error, "step": self.step, "weights": self.weights, "stale": self.stale}


class WeightAverage:
    """An exponential moving average of the weights (train.ema): validated, selected and kept in
    place of the live weights, which carry on training underneath; its state travels with the
    resumable training state."""

    def __init__(self, model: torch.nn.Module, decay: float, saved: dict[str, Any] | None = None) -> None:
        self.average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
        if saved is not None:
            self.average.load_state_dict(saved)

    def update(self, model: torch.nn.Module) -> None:
        self.average.update_parameters(model)

    @torch.no_grad()
    def finish(self, model: torch.nn.Module) -> None:
        """Put the averaged weights in `model`."""
        for live, averaged in zip(model.parameters(), self.average.module.parameters()):
            live.copy_(averaged)

    @contextmanager
    def applied(self, model: torch.nn.Module):
        """The averaged weights in `model` inside the block, the live ones again after it."""
        live = [p.detach().clone() for p in model.parameters()]
        self.finish(model)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, kept in zip(model.parameters(), live):
                    p.copy_(kept)

    def state(self) -> dict[str, Any]:
        return self.average.state_dict()


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"generator": generator.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_resume_state(path: Path | None) -> dict[str, Any] | None:
    """The periodic training state at `path`, or None when there is none (or it is unreadable:
    an interrupted write never replaces a good file, see atomic_path)."""
    if path is None or not Path(path).exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a foreign or damaged file: start over rather than fail
        log.warning("train: ignoring unreadable resume state %s (%s)", path, exc)
        return None


def _resume(path: Path | None, model: WorldModel, optimizer, scheduler, generator: torch.Generator,
            steps: int) -> dict[str, Any] | None:
    """Load an interrupted training's state into the model, optimiser, schedule and RNGs; None
    when there is none."""
    saved = read_resume_state(path)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        _restore_rng(saved["rng"], generator)
        log.info("train: resuming from step %d of %d (%s)", saved["step"], steps, path)
    return saved


def _save_state(path: Path, state: dict[str, Any]) -> int:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return int(state["step"])


def train_world_model(model: WorldModel, data: TrajectoryDataset, train_cfg: DictConfig, val_fraction: float,
                      progress: bool = True, log_fn=None, resume_path: Path | None = None,
                      resume_meta: dict[str, Any] | None = None, fit_statistics: bool = True) -> dict[str, Any]:
    """Fit the model's statistics (unless `fit_statistics` is false: a trained model continued on
    new data keeps the space its weights were learnt in), then minimise its training loss on random windows, ending
    with the last weights (their moving average with train.ema > 0; validation measures the same
    weights) or (train.select=best) those of the best validation, and stopping
    early after train.patience validations without improvement.

    With `resume_path`, everything needed to continue (weights, optimiser, schedule, step,
    history, RNG states and `resume_meta`, e.g. the W&B run id) is saved there every
    `train.checkpoint_every` steps, and a run that finds the file continues from it: same
    batches, same result as an uninterrupted run. Returns the history and final metrics."""
    device = model.device
    generator = torch.Generator(device="cpu").manual_seed(int(train_cfg.seed))
    torch.manual_seed(int(train_cfg.seed))
    train_set, val_set = data.split(val_fraction)
    episodes, val_episodes = Episodes(model, train_set), Episodes(model, val_set)
    if fit_statistics:
        model.prepare(episodes.states, episodes.actions)
    calibration = episodes.calibration_sample(seed=int(train_cfg.seed))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    steps = int(train_cfg.steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 0.5 * (1 + math.cos(math.pi * k / steps)))
    saved = _resume(resume_path, model, optimizer, scheduler, generator, steps)
    history: list[dict[str, float]] = [] if saved is None else saved["history"]
    first = 1 if saved is None else saved["step"] + 1
    checkpoint_every = int(train_cfg.get("checkpoint_every") or 0)
    policy = str(train_cfg.get("nonfinite", "stop"))
    if policy not in NONFINITE_POLICIES:
        raise ValueError(f"train.nonfinite={policy!r}: allowed {list(NONFINITE_POLICIES)}")
    skipped, in_a_row = (saved or {}).get("skipped", 0), 0
    last_saved = saved["step"] if saved is not None else None

    def stop(step: int, what: str) -> NonFiniteTraining:
        kept = (f"the training state of step {last_saved} is kept in {resume_path}" if last_saved is not None
                else "no training state was saved")
        return NonFiniteTraining(f"world-model training: {what} at step {step}; {kept} and no checkpoint was written. "
                                 "Lower train.lr, check the dataset, or set train.nonfinite=skip to skip such batches")

    selection = Selection(str(train_cfg.get("select", "last")), int(train_cfg.get("patience", 0)),
                          (saved or {}).get("selection"))
    decay = float(train_cfg.get("ema", 0.0) or 0.0)
    average = WeightAverage(model, decay, (saved or {}).get("ema")) if decay > 0 else None
    bar = tqdm(range(first, steps + 1), desc="train", unit="step", disable=not progress, mininterval=1.0,
               initial=first - 1, total=steps)
    batches = BatchIndices(episodes, int(train_cfg.batch_size), generator, checkpoint_every if resume_path else 0)
    autocast = training_autocast(str(train_cfg.get("precision", "fp32")), device)
    for step in bar:
        obs, actions = episodes.windows_at(batches.next(step))
        with autocast:
            loss, parts = model.training_loss(obs, actions)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # skip checks every batch (one host sync a step); stop checks at validation and before saving
        if policy == "skip" and not bool(torch.isfinite(loss) & _gradients_finite(model)):
            skipped, in_a_row = skipped + 1, in_a_row + 1
            if in_a_row >= MAX_SKIPPED_IN_A_ROW:
                raise stop(step, f"{in_a_row} batches in a row gave a NaN/Inf loss or gradient (train.nonfinite=skip)")
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            continue
        in_a_row = 0
        optimizer.step()
        scheduler.step()
        if average is not None:
            average.update(model)
        if step % int(train_cfg.eval_every) == 0 or step == steps:
            loss_value = loss.item()
            if not math.isfinite(loss_value) or not weights_are_finite(model):
                raise stop(step, f"the loss is {loss_value}" if not math.isfinite(loss_value) else "the weights hold NaN/Inf")
            with average.applied(model) if average is not None else nullcontext():  # validate what training keeps
                model.calibrate(calibration)
                metrics = {"train/step": step, "train/loss": loss_value, "train/skipped_batches": skipped,
                           **{f"train/{k}": float(v) for k, v in parts.items() if k != "loss"},
                           **held_out_metrics(model, val_episodes, int(train_cfg.rollout_len))}
                history.append(metrics)
                bar.set_postfix(loss=f"{loss_value:.4f}", val=f"{metrics['val/one_step_mse']:.4f}")
                if log_fn is not None:
                    log_fn(metrics)
                early_stop = selection.update(model, step, metrics)
            if early_stop:
                log.info("train: stopping at step %d: %d validations without a lower rollout error (train.patience)",
                         step, selection.stale)
                break
        if resume_path is not None and checkpoint_every and step % checkpoint_every == 0 and step < steps:
            if not weights_are_finite(model):  # never replace the last good state with a NaN one
                raise stop(step, "the weights hold NaN/Inf")
            state = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "rng": _rng_state(generator), "history": history,
                     "skipped": skipped, "selection": selection.state(), **(resume_meta or {})}
            if average is not None:
                state["ema"] = average.state()
            last_saved = _save_state(resume_path, state)
    if average is not None:
        average.finish(model)
    final = selection.finish(model, history)
    if not weights_are_finite(model):
        raise stop(steps, "the weights hold NaN/Inf")
    model.eval()
    return {"history": history, "final": final}


def save_checkpoint(path: Path, model: WorldModel, model_cfg: DictConfig, meta: dict[str, Any]) -> None:
    """state_dict + resolved model config + normalisation statistics + provenance."""
    payload = {
        "version": CHECKPOINT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_config": OmegaConf.to_container(model_cfg, resolve=True),
        "state_dim": getattr(model, "task_state_dim", model.state_dim),  # the task's (pixel models: not the latent's)
        "action_dim": model.action_dim,
        "normalization": {k: v.detach().cpu() for k, v in model.state_dict().items() if k.endswith(("_mean", "_std"))},
        "state_readout": getattr(model, "state_readout", None),
        **meta,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def weights_are_finite(model: torch.nn.Module) -> bool:
    """No NaN or Inf in the parameters and no NaN in the buffers (state bounds may be infinite)."""
    return (all(bool(torch.isfinite(p).all()) for p in model.parameters())
            and not any(bool(torch.isnan(b).any()) for b in model.buffers() if b.is_floating_point()))


def _unpickler_reason(exc: pickle.UnpicklingError) -> str:
    """The line of torch's weights-only refusal that names what the file wanted to load."""
    lines = [line.strip() for line in str(exc).splitlines() if "WeightsUnpickler error" in line]
    return lines[0].split(". Please use")[0] if lines else type(exc).__name__


def load_checkpoint(path: str | Path, device: torch.device, expect_env: str | None = None,
                    expect_dims: tuple[int, int] | None = None) -> tuple[WorldModel, dict[str, Any]]:
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only found a class or callable to load
        raise ConfigError(f"checkpoint {path} was refused: it holds Python objects besides tensors and plain "
                          f"data, and loading them could run code ({_unpickler_reason(exc)})") from exc
    except Exception as exc:  # torch raises many kinds for a truncated or foreign file
        raise ConfigError(f"checkpoint {path} could not be read as a grasp checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(f"checkpoint {path} is not a grasp checkpoint of version {CHECKPOINT_VERSION}")
    if expect_env is not None and payload.get("env") != expect_env:
        raise ConfigError(f"checkpoint {path} was trained on env {payload.get('env')!r}, this run uses {expect_env!r}")
    if expect_dims is not None and (payload.get("state_dim"), payload.get("action_dim")) != expect_dims:
        raise ConfigError(f"checkpoint {path} has (state_dim, action_dim) = "
                          f"{(payload.get('state_dim'), payload.get('action_dim'))}, the task needs {expect_dims}")
    try:
        model = build_world_model(payload["model_config"], payload["state_dim"], payload["action_dim"])
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a missing entry, or weights of another shape
        raise ConfigError(f"checkpoint {path} does not hold a world model this code can load ({type(exc).__name__}: "
                          f"{exc}); retrain it (delete the file) or point `checkpoint` at another") from exc
    if not weights_are_finite(model):
        raise ConfigError(f"checkpoint {path} holds NaN or Inf weights; retrain it (delete the file)")
    if payload.get("state_readout") is not None:
        model.state_readout = payload["state_readout"]
    return model.to(device).eval(), payload


def resume_path(checkpoint: Path) -> Path:
    """Where the periodic training state of `checkpoint` lives until training finishes."""
    return checkpoint.with_name(checkpoint.stem + ".resume.pt")


def load_or_train(path: Path, model_cfg: DictConfig, data_fn, train_cfg: DictConfig, val_fraction: float,
                  task_name: str, dims: tuple[int, int], device: torch.device, meta: dict[str, Any],
                  allow_train: bool, progress: bool = True, log_fn=None,
                  resume_meta: dict[str, Any] | None = None,
                  after_training=None, start: WorldModel | None = None) -> tuple[WorldModel, dict[str, Any]]:
    """The cached checkpoint at `path`, training it first when missing (one process at a time).
    `data_fn` is called only when training is needed. An interrupted training run resumes from
    its last periodic state (`train.checkpoint_every`) when the same command runs again.
    `after_training(model, train_set, val_set) -> metrics` runs on the trained model before it is
    saved (readouts, task-level metrics); its metrics are stored with the checkpoint's. With
    `start`, training continues that model's weights and statistics instead of new ones."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.exists():
            model, payload = load_checkpoint(path, device, expect_env=task_name, expect_dims=dims)
            log.info("train: reusing cached world model %s", path)
            return model, payload
        if not allow_train:
            raise FileNotFoundError(
                f"no cached world model at {path} for this model config, and 'train' is not in `stages`; "
                "add it back to `stages` or set `checkpoint=<path>`"
            )
        data = data_fn()
        model = build_world_model(model_cfg, *dims).to(device)
        if start is not None:
            model.load_state_dict(start.state_dict())
        result = train_world_model(model, data, train_cfg, val_fraction, progress=progress, log_fn=log_fn,
                                   resume_path=resume_path(path), resume_meta=resume_meta,
                                   fit_statistics=start is None)
        metrics = dict(result["final"] or {})
        if after_training is not None:
            metrics.update(after_training(model, *data.split(val_fraction)))
        save_checkpoint(path, model, model_cfg, {**meta, "env": task_name, "metrics": metrics,
                                                 "history": result["history"]})
        resume_path(path).unlink(missing_ok=True)
        log.info("train: wrote %s; %s", path, _fmt(metrics))
        return model, {"metrics": metrics, "history": result["history"]}


def _fmt(metrics: dict[str, float] | None) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in (metrics or {}).items())



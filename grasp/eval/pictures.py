"""Pictures of what a pixel world model plans and predicts: strips of decoded virtual states over
optimisation iterations (the paper's Fig. 4), videos of an executed episode beside the model's
prediction of it, and training curves. Written as PNG/MP4 files; W&B gets the same files."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import imageio.v2 as imageio
import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def to_frames(images) -> np.ndarray:
    """(..., 3, S, S) floats in [0, 1] or uint8 -> (..., S, S, 3) uint8."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = (np.clip(images, 0.0, 1.0) * 255).round().astype(np.uint8)
    return np.moveaxis(images, -3, -1)


def plan_strip(rows: Sequence[np.ndarray], iterations: Sequence[int], path: Path, start: np.ndarray | None = None,
               goal: np.ndarray | None = None, columns: int = 10) -> Path:
    """One row per optimisation iteration: the decoded virtual states s_1..s_{T-1} of that
    iteration (`rows[i]`: (T_i - 1, 3, S, S)), at most `columns` evenly spaced time steps, framed
    by the start and goal frames when given."""
    if len(rows) != len(iterations) or not len(rows):
        raise ValueError(f"plan_strip needs one row per iteration, got {len(rows)} rows, {len(iterations)} iterations")
    width = min(columns, min(len(r) for r in rows))
    panels = width + (start is not None) + (goal is not None)
    fig, axes = plt.subplots(len(rows), panels, figsize=(1.1 * panels, 1.15 * len(rows)), squeeze=False)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    for r, (states, iteration) in enumerate(zip(rows, iterations)):
        steps = np.linspace(0, len(states) - 1, width).round().astype(int)
        panel = [(start, "start")] if start is not None else []
        panel += [(states[t], f"t={t + 1}") for t in steps]
        panel += [(goal, "goal")] if goal is not None else []
        for c, (image, title) in enumerate(panel):
            axes[r, c].imshow(to_frames(image))
            if r == 0:
                axes[r, c].set_title(title, fontsize=7)
        axes[r, 0].set_ylabel(f"iter {iteration}", fontsize=7)
    fig.tight_layout(pad=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def side_by_side_video(left: np.ndarray, right: np.ndarray, path: Path, fps: int = 5, gap: int = 4) -> Path:
    """An MP4 of two equally long frame sequences (T, 3, S, S) side by side (left: the
    simulator, right: the model), separated by a white bar."""
    left, right = to_frames(left), to_frames(right)
    if left.shape != right.shape:
        raise ValueError(f"side_by_side_video needs two sequences of one shape, got {left.shape} and {right.shape}")
    bar = np.full((*left.shape[:2], gap, 3), 255, dtype=np.uint8)
    frames = np.concatenate([left, bar, right], axis=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # yuv420p needs even sides; macro_block_size=2 pads to them instead of rescaling
    imageio.mimwrite(path, list(frames), fps=fps, codec="libx264", macro_block_size=2)
    return path


def training_curves(history: Sequence[dict], path: Path) -> Path:
    """The logged training and validation metrics against the training step, one panel each
    (log scale: losses span decades)."""
    keys = sorted({k for row in history for k in row if k != "train/step"})
    if not history or not keys:
        raise ValueError("training_curves needs a non-empty history with metrics")
    steps = [row["train/step"] for row in history]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.0 * len(keys), 2.6), squeeze=False)
    for axis, key in zip(axes[0], keys):
        values = [row.get(key, np.nan) for row in history]
        axis.plot(steps, values, marker=".")
        axis.set_title(key, fontsize=8)
        axis.set_xlabel("step", fontsize=7)
        if all(v > 0 for v in values if np.isfinite(v)):
            axis.set_yscale("log")
        axis.tick_params(labelsize=6)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def episode_pictures(model, outcome, directory: Path, name: str,
                     env_frames: np.ndarray | None = None) -> tuple[dict[str, Path], dict[str, Path]]:
    """A pixel model's pictures of one evaluated episode: the strip of its first plan's decoded
    states over iterations (virtual states of lifted planners, predicted states along the
    current actions of the others; the planner's `snapshots` knob) and the video of the simulator's
    frames beside the model's decoded prediction of them. `env_frames`, the frames after every env
    step (stacked actions: several per model step, grasp.envs.observe.env_step_frames), make the
    video show every env step, each model prediction held over the env steps of its model step.
    Returns (images, videos) by W&B key."""
    import torch

    images: dict[str, Path] = {}
    videos: dict[str, Path] = {}
    start = goal = None
    if outcome.start_observation is not None:
        start, goal = outcome.start_observation[-3:], outcome.goal_observation[-3:]
    info = outcome.first_plan_info or {}
    device = model.device
    with torch.no_grad():
        if info.get("snapshots"):
            rows = [model.decode(snapshot.to(device)).cpu().numpy() for snapshot in info["snapshots"]]
            images[f"pictures/{name}_plan_strip"] = plan_strip(rows, info["snapshot_iteration"],
                                                                Path(directory) / f"{name}_plan_strip.png",
                                                                start=start, goal=goal)
        if outcome.frames:
            predicted = model.decode(torch.stack(outcome.predicted).to(device)).cpu().numpy()
            seen = np.stack(outcome.frames)
            if env_frames is not None and len(env_frames) and len(env_frames) % len(predicted) == 0:
                seen = np.asarray(env_frames)
                predicted = np.repeat(predicted, len(env_frames) // len(predicted), axis=0)
            videos[f"pictures/{name}_video"] = side_by_side_video(seen, predicted, Path(directory) / f"{name}_video.mp4")
    return images, videos

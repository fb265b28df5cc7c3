"""Pictures land as real PNG/MP4 files that read back with the content put in."""

from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest

from grasp.eval.pictures import plan_strip, side_by_side_video, to_frames, training_curves


def test_to_frames_converts_floats_and_channel_order():
    images = np.zeros((2, 3, 8, 8))
    images[1, 0] = 1.0  # the second image is pure red
    frames = to_frames(images)
    assert frames.shape == (2, 8, 8, 3) and frames.dtype == np.uint8
    assert (frames[1, ..., 0] == 255).all() and (frames[1, ..., 1:] == 0).all() and (frames[0] == 0).all()
    np.testing.assert_array_equal(to_frames(frames.transpose(0, 3, 1, 2)), frames)


def test_plan_strip_writes_one_row_per_iteration(tmp_path):
    rng = np.random.default_rng(0)
    rows = [rng.random((9, 3, 16, 16)) for _ in range(3)]
    path = plan_strip(rows, [0, 50, 99], tmp_path / "strip.png", start=rows[0][0], goal=rows[0][-1], columns=5)
    one_row = plan_strip(rows[:1], [0], tmp_path / "one.png", columns=5)
    tall, short = imageio.imread(path), imageio.imread(one_row)
    assert tall.ndim == 3 and tall.shape[0] > 2 * short.shape[0], "three rows are taller than one"
    assert tall.shape[1] > short.shape[1], "start and goal panels widen the strip"
    with pytest.raises(ValueError, match="one row per iteration"):
        plan_strip(rows, [0, 1], tmp_path / "bad.png")


def test_side_by_side_video_round_trips(tmp_path):
    left = np.zeros((6, 3, 16, 16), dtype=np.uint8)
    right = np.full((6, 3, 16, 16), 255, dtype=np.uint8)
    left[:, 0] = np.linspace(0, 250, 6).astype(np.uint8)[:, None, None]  # the red channel brightens
    path = side_by_side_video(left, right, tmp_path / "episode.mp4", fps=5)
    frames = imageio.mimread(path)
    assert len(frames) == 6 and frames[0].shape[1] >= 36  # 16 + 4 + 16 wide (padded to even)
    reds = [f[8, 4, 0] for f in frames]  # lossy codec: compare loosely
    assert reds[-1] > reds[0] + 150 and abs(int(frames[3][8, 28, 1]) - 255) < 30
    with pytest.raises(ValueError, match="one shape"):
        side_by_side_video(left, right[:3], tmp_path / "bad.mp4")


def test_training_curves_plot_every_metric(tmp_path):
    history = [{"train/step": s, "train/loss": 1.0 / s, "val/recon_mse": 0.5 / s} for s in (10, 20, 30)]
    image = imageio.imread(training_curves(history, tmp_path / "curves.png"))
    assert image.shape[1] > image.shape[0], "two panels side by side"
    with pytest.raises(ValueError, match="non-empty history"):
        training_curves([], tmp_path / "none.png")

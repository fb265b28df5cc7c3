"""Datasets from exploration in the simulator, and world-model training."""

"""Data policies: how exploration episodes and `rollout` goals move a task.

They act at env-step granularity whatever the task's `action_chunk`: noise policies draw one
env action per env step (so the sub-actions of a stacked model action vary as a planner's do),
and a scripted policy is asked once per env step (the Push-T pusher keeps its 10 Hz behaviour).
With action_chunk = 1 the draws are those of a model step holding one action.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from grasp.envs.base import Task

def exploration_actions(
    rng: np.random.Generator, steps: int, action_dim: int, policy: str, correlation: float
) -> np.ndarray:
    """Actions in [-1, 1] for one episode. 'colored' is AR(1) noise with unit marginal std
    before clipping: it makes the agent travel across rooms, which white noise rarely does."""
    noise = rng.standard_normal((steps, action_dim))
    if policy == "uniform":
        return rng.uniform(-1.0, 1.0, (steps, action_dim))
    if policy != "colored":
        raise ValueError(f"data.policy={policy!r}: allowed 'uniform' or 'colored' (or 'scripted', per step)")
    actions = np.empty_like(noise)
    actions[0] = noise[0]
    scale = np.sqrt(1.0 - correlation**2)
    for t in range(1, steps):
        actions[t] = correlation * actions[t - 1] + scale * noise[t]
    return np.clip(actions, -1.0, 1.0)


def policy_steps(task: Task, rng: np.random.Generator, steps: int, policy: str, correlation: float,
                 action_dtype=np.float64, random_steps: float = 0.0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Run the data policy for `steps` model steps from the task's current state, yielding each
    model step's stacked action (k * A,) and the state it reached. Actions are rounded to
    `action_dtype` before they are executed, so a dataset that stores float32 actions holds
    exactly what the simulator ran. With probability `random_steps` a model step's k env actions
    are drawn i.i.d. uniform in the action box instead (as a sampling planner's first draws vary
    within a stacked action); 0 draws nothing extra, so the policy's stream is unchanged."""
    k, low, high = task.action_chunk, task.env_action_low, task.env_action_high
    if policy == "scripted":
        state = task.get_state()
        for _ in range(steps):
            if random_steps and rng.random() < random_steps:
                chunk = list(rng.uniform(low, high, (k, len(low))).astype(action_dtype))
                for action in chunk:
                    state = task.env_step(action)
            else:
                chunk = []
                for _ in range(k):
                    action = np.clip(task.exploration_action(rng, state), low, high).astype(action_dtype)
                    state = task.env_step(action)
                    chunk.append(action)
            yield np.concatenate(chunk), state
        return
    unit = exploration_actions(rng, steps * k, task.env_action_dim, policy, correlation)
    planned = (low + (unit + 1.0) * 0.5 * (high - low)).reshape(steps, k * task.env_action_dim)
    if random_steps:
        swap = rng.random(steps) < random_steps
        planned[swap] = rng.uniform(np.tile(low, k), np.tile(high, k), (int(swap.sum()), k * len(low)))
    for action in np.clip(planned, task.action_low, task.action_high).astype(action_dtype):
        yield action, task.step(action)

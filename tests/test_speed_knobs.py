"""The run's speed knobs do what they claim: `precision` autocasts the planners' optimisation (and
nothing after it), `compile` swaps the world model's step for a compiled one with the same
outputs. Their effect on speed is measured in scripts/bench_planners.py, not here."""

from __future__ import annotations

import pytest
import torch

from grasp.planners import build
from grasp.models.mlp import MLPWorldModel
from grasp.utils import AUTOCAST_DTYPES, compile_world_model
from test_planners import gen


def tiny_model() -> MLPWorldModel:
    torch.manual_seed(0)
    return MLPWorldModel(state_dim=3, action_dim=2, hidden_dim=16, depth=2)


@pytest.mark.parametrize("name", ["grasp", "gd", "cem"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_autocasts_the_optimisation_only(name, precision):
    model = tiny_model()
    dtypes: list[torch.dtype] = []
    model.net.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    planner = build(name, model, horizon=5, iterations=3, **(dict(sync="none") if name == "grasp" else {}))
    planner.autocast_dtype = AUTOCAST_DTYPES[precision]
    result = planner.plan(torch.zeros(2, 3), torch.ones(2, 3), generator=gen(0))
    expected = torch.bfloat16 if precision == "bf16" else torch.float32
    assert dtypes[0] == expected, "the optimisation's model calls run in the chosen precision"
    assert dtypes[-1] == torch.float32, "the final cost is computed in fp32"
    assert result.actions.dtype == torch.float32 and result.info["final_cost"].dtype == torch.float32
    assert torch.isfinite(result.actions).all()


def test_compiled_step_matches_the_eager_step_and_plans_alike():
    eager, compiled = tiny_model(), tiny_model()
    compile_world_model(compiled, "default")
    assert compiled.step is not eager.step and hasattr(compiled.step, "_torchdynamo_orig_callable")
    for batch in (4, 7):  # dynamic shapes: no error, same values
        state, action = torch.randn(batch, 3), torch.randn(batch, 2)
        torch.testing.assert_close(compiled.step(state, action), eager.step(state, action), atol=1e-5, rtol=1e-5)
    plans = [build("gd", model, horizon=4, iterations=3).plan(torch.zeros(2, 3), torch.ones(2, 3))
             for model in (eager, compiled)]
    torch.testing.assert_close(plans[1].actions, plans[0].actions, atol=1e-4, rtol=1e-4)

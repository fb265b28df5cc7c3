"""The run's speed knobs do what they claim: `precision` autocasts the planners' optimisation (and
nothing after it), `compile` swaps the world model's step for a compiled one with the same
outputs. Their effect on speed is measured in scripts/bench_planners.py, not here."""

from __future__ import annotations

import pytest
import torch

from grasp.planners import build
from grasp.models.mlp import MLPWorldModel
from grasp.precision import AUTOCAST_DTYPES, autocast_dtype, native_bf16_cpu
from grasp.utils import compile_world_model
from test_planners import gen


def tiny_model() -> MLPWorldModel:
    torch.manual_seed(0)
    return MLPWorldModel(state_dim=3, action_dim=2, hidden_dim=16, depth=2)


@pytest.mark.parametrize("name", ["grasp", "gd", "cem"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_autocasts_the_optimisation_only(name, precision):
    model = tiny_model()
    dtypes: list[torch.dtype] = []
    model.net[1].register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    planner = build(name, model, horizon=5, iterations=3, **(dict(sync="none") if name == "grasp" else {}))
    planner.autocast_dtype = AUTOCAST_DTYPES[precision]
    result = planner.plan(torch.zeros(2, 3), torch.ones(2, 3), generator=gen(0))
    expected = torch.bfloat16 if precision == "bf16" else torch.float32
    assert dtypes[0] == expected, "the optimisation's model calls run in the chosen precision"
    assert dtypes[-1] == torch.float32, "the final cost is computed in fp32"
    assert result.actions.dtype == torch.float32 and result.info["final_cost"].dtype == torch.float32
    assert torch.isfinite(result.actions).all()


@pytest.mark.parametrize("flags, native", [
    ("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n", True),  # AMD Zen 4, Intel Cooper Lake
    ("flags\t\t: fpu avx512f amx_bf16 amx_tile\n", True),  # Intel Sapphire Rapids
    ("Features\t: fp asimd sve bf16 i8mm\n", True),  # Arm v8.6 (Graviton 3)
    ("flags\t\t: fpu sse2 avx2 avx512f avx512bw\n", False),  # AVX-512 without BF16 (Skylake)
    ("model name\t: bf16 in a name is not a flag\nflags\t\t: avx2\n", False),
])
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(flags * 2)  # one block per core
    assert native_bf16_cpu(cpuinfo) is native
    assert native_bf16_cpu(tmp_path / "missing") is False


@pytest.mark.parametrize("name, wide", [("cem", True), ("mppi", True), ("icem", True), ("gd", False),
                                        ("grasp", False), ("latco", False)])
def test_auto_precision_is_bf16_for_samplers_on_a_native_bf16_cpu_only(name, wide):
    planner = build(name, tiny_model(), horizon=5)
    assert planner.wide_calls is wide
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    native = native_bf16_cpu()
    assert autocast_dtype("auto", cpu, planner.wide_calls) == (torch.bfloat16 if wide and native else None)
    assert autocast_dtype("auto", gpu, planner.wide_calls) is None, "a GPU's small calls cost their launch: fp32"
    for precision in ("fp32", "bf16"):  # explicit choices are kept whatever the planner and device
        assert autocast_dtype(precision, cpu, planner.wide_calls) == AUTOCAST_DTYPES[precision]
    with pytest.raises(ValueError, match="precision='fp16'.*auto"):
        autocast_dtype("fp16", cpu, wide)


@pytest.mark.parametrize("name, label", [("grasp", "bf16 lifted, fp32 sync"), ("latco", "bf16 lifted")])
def test_auto_runs_grasps_lifted_iterations_in_bf16_and_the_serial_calls_in_fp32(monkeypatch, name, label):
    monkeypatch.setattr("grasp.precision.native_bf16_cpu", lambda: True)
    model, seen = tiny_model(), []
    model.net[1].register_forward_hook(lambda module, args, out: seen.append((args[0].shape[:-1].numel(), out.dtype)))
    planner = build(name, model, horizon=5, iterations=4, **(dict(sync_every=2, sync_steps=2) if name == "grasp" else {}))
    planner.use_precision("auto")
    assert planner.precision == label
    planner.plan(torch.zeros(2, 3), torch.ones(2, 3), generator=gen(0))
    lifted = [dtype for rows, dtype in seen if rows == 2 * 5]  # one call over every (problem, time) pair
    serial = [dtype for rows, dtype in seen if rows == 2]  # the sync's shooting steps and the final rollout
    assert lifted == [torch.bfloat16] * 4 and serial and set(serial) == {torch.float32}
    planner.use_precision("fp32")
    assert planner.precision == "fp32" and planner.lifted_dtype is None
    planner.use_precision("bf16")
    assert planner.precision == "bf16" and planner.lifted_dtype == torch.bfloat16


def test_auto_runs_a_cem_sync_in_bf16_as_cem_runs(monkeypatch):
    monkeypatch.setattr("grasp.precision.native_bf16_cpu", lambda: True)
    model, seen = tiny_model(), []
    model.net[1].register_forward_hook(lambda module, args, out: seen.append((args[0].shape[:-1].numel(), out.dtype)))
    planner = build("grasp", model, horizon=5, iterations=4, sync="cem", sync_every=2, sync_steps=2, sync_samples=8)
    planner.use_precision("auto")
    assert planner.precision == "bf16"
    planner.plan(torch.zeros(2, 3), torch.ones(2, 3), generator=gen(0))
    sampled = {dtype for rows, dtype in seen if rows == 2 * 8}  # the sync's CEM: samples x problems rows
    assert sampled == {torch.bfloat16}
    assert {dtype for rows, dtype in seen if rows == 2 * 5} == {torch.bfloat16}  # the lifted calls


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

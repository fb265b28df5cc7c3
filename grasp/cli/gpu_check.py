"""The one prepared GPU check (scripts/gpu_check.sh): what a machine with a GPU runs as is, in one
go, to verify the CUDA path and measure it. Each section runs in its own process under its own
time limit, so one that fails or runs long costs only itself; the report says which did what.

  run        a tiny default experiment (collect -> train -> MPC with GRASP, CEM, GD) on the device,
             with torch.cuda.set_sync_debug_mode("warn") inside every plan() call: the host syncs
             counted by where they come from, those inside the planners' loops apart
  agreement  one plan per planner on the CPU and on the device from the same weights and the same
             CPU noise generator: how far the plans and their costs differ (TF32 off and on)
  bench      the planner benchmark (grasp.cli.bench) over T x B for GRASP (sync included), GD and
             CEM: eager fp32, compiled, and bf16
  latency    plan calls against their latency bound (grasp.cli.latency) at the default sizes

Files (at most 8, flat, so the device tool brings them all back): report.md, run.csv,
sync_warnings.csv, agreement.csv, bench_eager.csv, bench_compile.csv, bench_bf16.csv,
latency.csv. `--cpu` runs every section at tiny sizes on the CPU (the test that keeps this
script working on machines without a GPU); compile is skipped there (minutes of CPU compilation).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

import grasp
from grasp.config import REPO_ROOT

PACKAGE = Path(grasp.__file__).resolve().parent

SECTIONS = ("run", "agreement", "bench", "latency")
#: seconds each section may take on the GPU (the whole check stays under 8 minutes)
GPU_LIMITS = {"run": 120, "agreement": 45, "bench": 215, "latency": 100}
CPU_LIMITS = {"run": 300, "agreement": 120, "bench": 300, "latency": 120}
PLANNERS = ("grasp", "cem", "gd")


# ---- run: a tiny experiment with host syncs counted ------------------------------------------
class SyncWarnings:
    """Records torch's "synchronizing CUDA operation" warnings raised inside Planner.plan, each with
    the innermost grasp source line and whether it came from inside a planner's `_optimize` (the
    loops) or from the once-per-call code around it."""

    def __init__(self) -> None:
        self.where: Counter = Counter()

    def install(self) -> None:
        from grasp.planners import base

        plan, sync_mode = base.Planner.plan, getattr(torch.cuda, "set_sync_debug_mode", None)
        record = self

        def watched(planner, *args, **kwargs):
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                previous = warnings.showwarning
                warnings.showwarning = lambda message, *rest: record.add(str(message))
                on_cuda = planner.device.type == "cuda" and sync_mode is not None
                if on_cuda:
                    sync_mode("warn")
                try:
                    return plan(planner, *args, **kwargs)
                finally:
                    if on_cuda:
                        sync_mode("default")
                    warnings.showwarning = previous

        base.Planner.plan = watched

    def add(self, message: str) -> None:
        if "synchroniz" not in message:
            return
        stack = traceback.extract_stack()[:-2]
        ours = [f for f in stack if Path(f.filename).resolve().is_relative_to(PACKAGE)]
        frame = ours[-1] if ours else stack[-1]
        in_loop = any(f.name == "_optimize" for f in stack)
        self.where[(in_loop, f"{Path(frame.filename).name}:{frame.lineno} ({frame.name})")] += 1

    def frame(self) -> pd.DataFrame:
        rows = [{"in_plan_loop": loop, "where": where, "count": n} for (loop, where), n in self.where.most_common()]
        return pd.DataFrame(rows, columns=["in_plan_loop", "where", "count"])


def section_run(out: Path, cpu: bool) -> None:
    from grasp import runner
    from grasp.config import compose

    sizes = (["data.episodes=20", "data.episode_len=20", "train.steps=40", "train.eval_every=20",
              "world_model.hidden_dim=32", "world_model.depth=2", "eval.episodes=2", "eval.max_steps=6",
              "horizon=6", "planner.iterations=25"] if cpu else
             ["data.episodes=100", "train.steps=500", "eval.episodes=4", "eval.max_steps=30"])
    device = "cpu" if cpu else "cuda"
    syncs = SyncWarnings()
    syncs.install()
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for name in PLANNERS:
            cfg = compose(["experiment=quick", f"planner={name}", f"device={device}", "progress=false",
                           "logger.wandb.mode=disabled", f"paths.root_dir={root}", f"paths.output_dir={root}/{name}",
                           *sizes])
            before = sum(n for (loop, _), n in syncs.where.items() if loop)
            start = time.perf_counter()
            results = runner.run(cfg, Path(root) / name)
            loop_syncs = sum(n for (loop, _), n in syncs.where.items() if loop) - before
            rows.append({"planner": name, "device": device, "episodes": len(results),
                         "success_%": 100 * float(results.success.mean()), "plan_s": float(results.plan_time.sum()),
                         "plan_calls": int(results.plan_calls.sum()) if "plan_calls" in results else None,
                         "syncs_in_plan_loops": loop_syncs, "wall_s": time.perf_counter() - start})
    pd.DataFrame(rows).to_csv(out / "run.csv", index=False)
    syncs.frame().to_csv(out / "sync_warnings.csv", index=False)


# ---- agreement: the same plan on the CPU and on the device ------------------------------------
def section_agreement(out: Path, cpu: bool) -> None:
    from grasp.cli import bench

    device = torch.device("cpu" if cpu else "cuda")
    sizes = argparse.Namespace(seed=0, depth=None, state_dim=4, action_dim=2, hidden_dim=32 if cpu else 256,
                               residual_scale=0.1, action_gain=10.0, compile=None)
    horizon, batch = (6, 2) if cpu else (30, 10)
    host = bench.build_model("mlp", sizes, torch.device("cpu"))
    moved = copy.deepcopy(host).to(device)
    rows = []
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        for name in PLANNERS:
            variant = bench.VARIANTS["grasp_sync" if name == "grasp" else name]
            node = bench.variant_node(variant, horizon)
            if cpu:
                node.iterations = min(int(node.iterations), 25)
            plans = {}
            for where, model in (("cpu", host), ("device", moved)):
                planner = bench.make_planner(node, model)
                problem = bench.make_problem(model, horizon, batch, 0, 0.1)
                result = planner.plan(problem.state0, problem.goal, generator=torch.Generator().manual_seed(0))
                plans[where] = (result.actions.cpu(), result.info["final_cost"].cpu())
            (a_cpu, c_cpu), (a_dev, c_dev) = plans["cpu"], plans["device"]
            rows.append({"planner": name, "tf32": tf32, "device": str(device),
                         "max_action_diff": float((a_cpu - a_dev).abs().max()),
                         "cost_cpu": float(c_cpu.mean()), "cost_device": float(c_dev.mean()),
                         "max_cost_rel_diff": float(((c_cpu - c_dev).abs() / c_cpu.abs().clamp_min(1e-8)).max())})
    torch.backends.cuda.matmul.allow_tf32 = True
    pd.DataFrame(rows).to_csv(out / "agreement.csv", index=False)


# ---- bench and latency: the benchmarks, on the device ----------------------------------------
def bench_variants(cpu: bool) -> dict[str, list[str]]:
    """Name -> grasp.cli.bench arguments of each benchmark run."""
    if cpu:
        grid = ["--quick", "--device", "cpu", "--models", "mlp", "--planners", "grasp_sync,gd,cem"]
        return {"eager": grid, "bf16": grid + ["--precision", "bf16"]}
    grid = ["--models", "mlp", "--planners", "grasp_sync,gd,cem", "--horizons", "10,50,100,200", "--batches", "1,64",
            "--device", "cuda", "--chunk-size", "0", "--iterations", "5", "--target-horizons", "100", "200"]
    light = ["--repeats", "1", "--threshold-iters", "1", "--threshold-iters-sampling", "1"]
    return {"eager": grid + ["--repeats", "2", "--threshold-iters", "60", "--threshold-iters-sampling", "10"],
            "compile": grid + light + ["--compile", "default"], "bf16": grid + light + ["--precision", "bf16"]}


def section_bench(out: Path, cpu: bool, limit: float) -> None:
    """Each variant in its own process, sharing the section's time; a variant cut off keeps the
    rows it measured (the benchmark's partial CSV)."""
    variants = bench_variants(cpu)
    deadline = time.monotonic() + limit
    for i, (name, argv) in enumerate(variants.items()):
        left = deadline - time.monotonic()
        share = left / (len(variants) - i)
        with tempfile.TemporaryDirectory() as scratch:
            cmd = [sys.executable, "-m", "grasp.cli.bench", *argv, "--no-progress", "--out", scratch]
            try:
                subprocess.run(cmd, check=False, timeout=max(share, 1.0), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                pass
            for written in ("bench_planners.csv", "bench_planners.partial.csv"):
                if (Path(scratch) / written).exists():
                    frame = pd.read_csv(Path(scratch) / written)
                    frame.insert(0, "complete", written == "bench_planners.csv")
                    frame.to_csv(out / f"bench_{name}.csv", index=False)
                    break


def section_latency(out: Path, cpu: bool) -> None:
    from grasp.cli import latency

    argv = ["--device", "cpu" if cpu else "cuda", "--out", str(out)]
    if cpu:
        argv += ["--horizons", "5", "--batches", "2", "--hidden-dim", "32", "--repeats", "1"]
    else:
        argv += ["--horizons", "30", "--batches", "10,64"]  # T = 200 took 3 of the 4 minutes on an H200
    frame = latency.main(argv)
    (out / "latency_bound.md").unlink(missing_ok=True)
    frame.to_csv(out / "latency.csv", index=False)
    (out / "latency_bound.csv").unlink(missing_ok=True)


# ---- the driver ----------------------------------------------------------------------------------
def run_section(name: str, out: Path, cpu: bool, limit: float) -> dict:
    """One section in a child process under `limit` seconds: its status, time and output tail."""
    cmd = [sys.executable, "-m", "grasp.cli.gpu_check", "--section", name, "--out", str(out), "--limit", str(limit)]
    cmd += ["--cpu"] if cpu else []
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit + 30)
        status, tail = ("ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"), proc.stderr[-3000:]
    except subprocess.TimeoutExpired as exc:
        status, tail = "timed out", (exc.stderr or b"")[-3000:].decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
    return {"section": name, "status": status, "seconds": time.perf_counter() - start, "tail": tail}


def table(path: Path, columns: Sequence[str] | None = None) -> str:
    if not path.exists():
        return "(no file: the section wrote nothing)"
    frame = pd.read_csv(path)
    if columns is not None:
        frame = frame[[c for c in columns if c in frame.columns]]
    return frame.to_markdown(index=False, floatfmt=".4g") if len(frame) else "(none)"


BENCH_COLUMNS = ["complete", "planner", "compile", "precision", "horizon", "batch", "sec_per_iter",
                 "time_to_threshold_s", "peak_mem_mb"]


def report(out: Path, outcomes: list[dict], cpu: bool) -> str:
    device = "CPU (--cpu, tiny sizes)" if cpu else (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "?")
    lines = [f"# GPU check ({dt.datetime.now().isoformat(timespec='seconds')})", "",
             f"Device: {device}; torch {torch.__version__} (CUDA {torch.version.cuda}); "
             f"command: `scripts/gpu_check.sh{' --cpu' if cpu else ''}`", "",
             pd.DataFrame([{k: v for k, v in o.items() if k != "tail"} for o in outcomes]).to_markdown(
                 index=False, floatfmt=".1f"), ""]
    lines += ["## Run: tiny default experiment on the device", "", table(out / "run.csv"), "",
              "Host syncs inside plan() (`set_sync_debug_mode('warn')`; in_plan_loop: raised inside a "
              "planner's `_optimize`):", "", table(out / "sync_warnings.csv"), "",
              "## CPU against device: the same plan", "", table(out / "agreement.csv"), "",
              "## Latency bound", "", table(out / "latency.csv"), ""]
    for name in ("eager", "compile", "bf16"):
        lines += [f"## Benchmark: {name}", "", table(out / f"bench_{name}.csv", BENCH_COLUMNS), ""]
    for o in outcomes:
        if o["status"] != "ok" and o["tail"]:
            lines += [f"## {o['section']}: {o['status']}, the end of its output", "", "```", o["tail"].strip(), "```", ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU (no GPU needed)")
    p.add_argument("--out", type=Path, default=None, help="default: outputs/gpu_check/<date-time>")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    p.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)  # a child process's one section
    p.add_argument("--limit", type=float, default=0.0, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.section is not None:
        out = args.out
        {"run": lambda: section_run(out, args.cpu), "agreement": lambda: section_agreement(out, args.cpu),
         "bench": lambda: section_bench(out, args.cpu, args.limit),
         "latency": lambda: section_latency(out, args.cpu)}[args.section]()
        return 0
    sections = [s for s in args.sections.split(",") if s]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise SystemExit(f"--sections: unknown {unknown}; allowed {', '.join(SECTIONS)}")
    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit("gpu_check: torch sees no CUDA device (torch "
                         f"{torch.__version__}); run with --cpu for the tiny CPU check")
    out = args.out or REPO_ROOT / "outputs" / "gpu_check" / dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    limits = CPU_LIMITS if args.cpu else GPU_LIMITS
    outcomes = []
    for name in sections:
        print(f"gpu_check: {name} (limit {limits[name]} s)", flush=True)
        outcomes.append(run_section(name, out, args.cpu, limits[name]))
        print(f"gpu_check: {name}: {outcomes[-1]['status']} in {outcomes[-1]['seconds']:.0f} s", flush=True)
    text = report(out, outcomes, args.cpu)
    (out / "report.md").write_text(text)
    print(text)
    print(f"gpu_check: wrote {out}")
    return 0 if all(o["status"] == "ok" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

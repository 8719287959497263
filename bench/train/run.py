"""bench/train: steps/s of Ray Train + DeepSpeed vs the same step under torchrun (CPU, 2 workers, gloo).

Launchers compared, each a fresh process per run (so wall time includes everything a user pays):

  torchrun  `torchrun --standalone --nproc_per_node 2 bench/train/worker.py torchrun` (the baseline)
  ray       Ray Train TorchTrainer (2 workers, fresh local Ray cluster) running the same function
  ray_loop  the train stage's own train_loop_per_worker under TorchTrainer, fed by a Ray Data
            shard, with its ray.train.report every report_every steps, final checkpoint and export

`torchrun` and `ray` run one function (bench/train/worker.py:bench_worker) that calls the
production `build_engine` and `train_step` of humanllm_ray.train.loop on the same fixed
synthetic token rows, the same model and the same DeepSpeed config (conf/deepspeed/zero{2,3}.json,
"auto" filled by ds_config.py). Steady-state steps/s = timed steps / wall time between two
barriers after the warm-up steps; ray_loop has no such barrier, so its steady state is timed
steps / summed in-step time (its loop_steps_per_s adds reports and the final checkpoint).

Runs are interleaved (rep -> ZeRO stage -> launcher, launcher order rotated each rep) and
medians reported; the 1-minute load average is recorded around every run.

    python bench/train/run.py [--stages 2 3] [--repeats 3] [--steps 30] [--warmup 5]
        [--micro-batch 4] [--seq-len 256] [--variants torchrun,ray,ray_loop]
        [--out bench/out/train.json] [key=value config overrides, e.g. model.tiny.hidden_size=384]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
WORKER = os.path.join(HERE, "worker.py")
VARIANTS = ("torchrun", "ray", "ray_loop")


def _versions() -> Dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "ray", "deepspeed", "transformers"):
        try:
            out[name] = __import__(name).__version__
        except Exception as exc:  # noqa: BLE001 - report, don't fail the bench
            out[name] = f"unavailable ({exc.__class__.__name__})"
    return out


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except Exception:  # noqa: BLE001
        return "load average: %.2f, %.2f, %.2f" % os.getloadavg()


def run_one(variant: str, spec: Dict[str, Any], workdir: str, tag: str) -> Dict[str, Any]:
    spec_path = os.path.join(workdir, f"{tag}.spec.json")
    result_path = os.path.join(workdir, f"{tag}.result.json")
    log_path = os.path.join(workdir, f"{tag}.log")
    with open(spec_path, "w") as fh:
        json.dump(spec, fh)
    if variant == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(spec["world"])]
    else:
        cmd = [sys.executable]
    cmd += [WORKER, variant, "--result", result_path, "--spec", spec_path]
    env = dict(os.environ, DS_ACCELERATOR="cpu", RAY_DEDUP_LOGS="1")
    env.pop("RAY_ADDRESS", None)  # the worker starts its own local cluster (address="local") regardless
    load_before = os.getloadavg()[0]
    t_launch = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    t_exit = time.time()
    load_after = os.getloadavg()[0]
    if not os.path.exists(result_path):
        with open(log_path) as fh:
            sys.stderr.write(fh.read()[-6000:])
        raise SystemExit(f"{variant} run {tag} failed (rc={proc.returncode}); log {log_path}")
    with open(result_path) as fh:
        r = json.load(fh)
    if proc.returncode != 0:
        # The steps finished (rank 0 wrote its result) but the process failed at exit: keep the
        # run, flagged, rather than lose the interleaving; the JSON says which ones.
        print(f"WARNING: {tag} exited rc={proc.returncode} after writing its result; log {log_path}", flush=True)
    r["exit_rc"] = proc.returncode
    hist = r.pop("history")
    r["step_time_s"] = [round(m["step_time_s"], 4) for m in hist]
    # 1 / median in-step time of the timed steps: less sensitive to a load spike than the mean.
    r["steps_per_s_median_step"] = 1.0 / statistics.median(m["step_time_s"] for m in hist[r["warmup_steps"]:])
    r["wall_s"] = t_exit - t_launch
    steps_all = sum(m["step_time_s"] for m in hist)  # warm-up + timed steps, in-step time
    if "t_entry" in r:
        r["launcher_start_s"] = r["t_entry"] - t_launch  # interpreter, Ray cluster/worker group, process group
        r["engine_init_s"] = r["t_engine"] - r["t_entry"]  # model load + deepspeed.initialize
        r["warmup_s"] = r["t_steps"] - r["t_engine"]
        r["teardown_s"] = t_exit - r["t_end"]
        r["overhead_s"] = r["wall_s"] - (r["t_end"] - r["t_engine"])  # everything but the steps
        for k in ("t_entry", "t_engine", "t_steps", "t_end"):
            r.pop(k)
    else:
        r["overhead_s"] = r["wall_s"] - steps_all
    r["load1_before"], r["load1_after"] = load_before, load_after
    r["tag"] = tag
    return r


def _median(xs: List[float]):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(runs: List[Dict[str, Any]], stages: List[int], variants: List[str]) -> Dict[str, Any]:
    summary: Dict[str, Any] = {}
    for stage in stages:
        per: Dict[str, Any] = {}
        for v in variants:
            rs = [r for r in runs if r["zero_stage"] == stage and r["launcher"] == v]
            if not rs:
                continue
            per[v] = {
                "n": len(rs),
                "steps_per_s_median": _median([r["steps_per_s"] for r in rs]),
                "steps_per_s_all": [round(r["steps_per_s"], 4) for r in rs],
                "ms_per_step_median": 1000 / _median([r["steps_per_s"] for r in rs]),
                "tokens_per_s_median": _median([r["tokens_per_s"] for r in rs]),
                "steps_per_s_median_step_median": _median([r.get("steps_per_s_median_step") for r in rs]),
                "cpu_s_per_step_median": _median([r.get("cpu_s_per_step") for r in rs]),
                "wall_s_median": _median([r["wall_s"] for r in rs]),
                "wall_s_all": [round(r["wall_s"], 1) for r in rs],
                "overhead_s_median": _median([r["overhead_s"] for r in rs]),
                "launcher_start_s_median": _median([r.get("launcher_start_s") for r in rs]),
                "engine_init_s_median": _median([r.get("engine_init_s") for r in rs]),
                "teardown_s_median": _median([r.get("teardown_s") for r in rs]),
                "loop_steps_per_s_median": _median([r.get("loop_steps_per_s") for r in rs]),
                "load1_median": _median([(r["load1_before"] + r["load1_after"]) / 2 for r in rs]),
            }
        base = per.get("torchrun")
        if base:
            for v, s in per.items():
                if v == "torchrun":
                    continue
                s["ratio_steps_per_s_vs_torchrun"] = s["steps_per_s_median"] / base["steps_per_s_median"]
                s["ratio_wall_vs_torchrun"] = s["wall_s_median"] / base["wall_s_median"]
                s["ratio_median_step_vs_torchrun"] = (
                    s["steps_per_s_median_step_median"] / base["steps_per_s_median_step_median"]
                )
                # Paired by rep (the two ran back to back, under similar load).
                paired, paired_cpu = [], []
                for r in runs:
                    if r["zero_stage"] == stage and r["launcher"] == v:
                        rep = r["tag"].split("-")[0]
                        b = [x for x in runs if x["zero_stage"] == stage and x["launcher"] == "torchrun" and x["tag"].split("-")[0] == rep]
                        if b:
                            paired.append(r["steps_per_s"] / b[0]["steps_per_s"])
                            if r.get("cpu_s_per_step") and b[0].get("cpu_s_per_step"):
                                # steps per CPU-second, ours / baseline (>1: ours cheaper per step)
                                paired_cpu.append(b[0]["cpu_s_per_step"] / r["cpu_s_per_step"])
                s["paired_ratios"] = [round(x, 3) for x in paired]
                s["paired_ratio_median"] = _median(paired)
                if s["cpu_s_per_step_median"] and base["cpu_s_per_step_median"]:
                    s["ratio_cpu_efficiency_vs_torchrun"] = base["cpu_s_per_step_median"] / s["cpu_s_per_step_median"]
                    s["paired_cpu_ratios"] = [round(x, 3) for x in paired_cpu]
        summary[f"zero{stage}"] = per
    return summary


def table(summary: Dict[str, Any]) -> str:
    head = (
        "| ZeRO | launcher | steps/s, median of 3 (each run) | ratio vs torchrun (of medians / paired by rep) "
        "| 1/median step time: steps/s (ratio) | CPU ms/step/rank (steps per CPU-s ratio) | wall s (median) "
        "| non-step overhead s | launcher start s | engine init s | load1 (median) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    fmt = lambda x, f="{:.1f}": "-" if x is None else f.format(x)  # noqa: E731
    rows = []
    for stage, per in summary.items():
        for v, s in per.items():
            if "ratio_steps_per_s_vs_torchrun" in s:
                ratio = f"**{s['ratio_steps_per_s_vs_torchrun']:.2f}** / {s['paired_ratio_median']:.2f}"
                med = f"{s['steps_per_s_median_step_median']:.3f} ({s['ratio_median_step_vs_torchrun']:.2f})"
                cpu_ratio = s.get("ratio_cpu_efficiency_vs_torchrun")
                cpu = "-" if cpu_ratio is None else f"{1000 * s['cpu_s_per_step_median']:.0f} ({cpu_ratio:.2f})"
            else:
                ratio = "1 (baseline)"
                med = f"{s['steps_per_s_median_step_median']:.3f}"
                cpu = fmt(s["cpu_s_per_step_median"] and 1000 * s["cpu_s_per_step_median"], "{:.0f}")
            rows.append(
                f"| {stage[4:]} | {v} | {s['steps_per_s_median']:.3f} ({', '.join(f'{x:.3f}' for x in s['steps_per_s_all'])}) "
                f"| {ratio} | {med} | {cpu} | {fmt(s['wall_s_median'])} | {fmt(s['overhead_s_median'])} "
                f"| {fmt(s['launcher_start_s_median'])} | {fmt(s['engine_init_s_median'])} | {fmt(s['load1_median'])} |"
            )
    return head + "\n".join(rows) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", type=int, nargs="+", default=[2, 3], choices=[2, 3])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30, help="timed optimizer steps per run")
    ap.add_argument("--warmup", type=int, default=5, help="untimed optimizer steps before them")
    ap.add_argument("--micro-batch", type=int, default=4, help="rows per worker per micro-batch")
    ap.add_argument("--seq-len", type=int, default=256, help="tokens per synthetic row (all rows equal length)")
    ap.add_argument("--rows", type=int, default=512, help="synthetic rows in the dataset (split over workers)")
    ap.add_argument("--world", type=int, default=2, help="workers (Ray Train) / processes (torchrun)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {VARIANTS}")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "out", "train.json"))
    ap.add_argument("--keep-logs", default=None, help="folder to keep each run's log and spec in")
    ap.add_argument("overrides", nargs="*", help="extra HumanLLM config overrides (key=value)")
    ap.add_argument("--summarize-only", metavar="JSON", help="recompute summary/table of an existing result file")
    args = ap.parse_args(argv)
    if args.summarize_only:
        with open(args.summarize_only) as fh:
            out = json.load(fh)
        runs = out["runs"]
        stages = sorted({r["zero_stage"] for r in runs})
        variants = [v for v in VARIANTS if any(r["launcher"] == v for r in runs)]
        out["summary"] = summarize(runs, stages, variants)
        with open(args.summarize_only, "w") as fh:
            json.dump(out, fh, indent=2)
        print(table(out["summary"]))
        return
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"unknown variant {v!r}")

    base_overrides = [
        "run.progress=false",
        f"train.num_workers={args.world}",
        "train.cpus_per_worker=0.5",
        f"train.micro_batch_size={args.micro_batch}",
        "train.gradient_accumulation_steps=1",
        f"train.max_length={args.seq_len}",
        "train.torch_threads=1",  # what Ray (OMP_NUM_THREADS=1) and torchrun give by default; pinned for both
        "train.bf16=false",
        "train.lora.enabled=false",
        "train.offload=false",
    ] + list(args.overrides)

    # Build (or find) the base model once here: workers only hit the cache.
    from humanllm_ray.config import load_config
    from humanllm_ray.model import ensure_base_model

    model_dir = ensure_base_model(load_config(overrides=base_overrides))
    with open(os.path.join(model_dir, "config.json")) as fh:
        model_config = json.load(fh)

    conditions = {
        "uptime_start": _uptime(),
        "nproc": os.cpu_count(),
        "versions": _versions(),
        "model_dir": model_dir,
        "model": {k: model_config.get(k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                  "num_attention_heads", "num_key_value_heads", "vocab_size")},
        "world": args.world,
        "micro_batch_per_worker": args.micro_batch,
        "seq_len": args.seq_len,
        "tokens_per_step": args.world * args.micro_batch * args.seq_len,
        "warmup_steps": args.warmup,
        "steps": args.steps,
        "rows": args.rows,
        "overrides": base_overrides,
        "dtype": "float32 (bf16 off), torch AdamW (client optimizer), no offload",
        "backend": "gloo, DS_ACCELERATOR=cpu, 1 torch thread per worker",
    }
    runs: List[Dict[str, Any]] = []
    workdir = args.keep_logs or tempfile.mkdtemp(prefix="bench-train-")
    os.makedirs(workdir, exist_ok=True)
    started = time.time()
    for rep in range(args.repeats):
        order = variants[rep % len(variants):] + variants[: rep % len(variants)]
        for stage in args.stages:
            for v in order:
                spec = {
                    "overrides": base_overrides + [f"train.zero_stage={stage}"],
                    "warmup_steps": args.warmup,
                    "steps": args.steps,
                    "n_rows": args.rows,
                    "seq_len": args.seq_len,
                    "world": args.world,
                }
                tag = f"r{rep}-z{stage}-{v}"
                r = run_one(v, spec, workdir, tag)
                runs.append(r)
                print(
                    f"[{time.time() - started:6.0f}s] {tag:18s} {r['steps_per_s']:.3f} steps/s "
                    f"wall {r['wall_s']:.1f}s overhead {r['overhead_s']:.1f}s load1 {r['load1_before']:.1f}->{r['load1_after']:.1f}",
                    flush=True,
                )
    conditions["uptime_end"] = _uptime()
    conditions["bench_wall_s"] = time.time() - started
    summary = summarize(runs, args.stages, variants)
    out = {"conditions": conditions, "summary": summary, "runs": runs}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=2)
    print(table(summary))
    print(f"uptime at start: {conditions['uptime_start']}\nuptime at end:   {conditions['uptime_end']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Capacity plan: hours and cost of each stage for a corpus size and a GPU cluster.

    humanllm plan --logs 5.5e6 --gpus 32 --gpu-type h100 --model 7b

Every rate comes from ``conf/rates.yaml`` with its provenance: the CPU stages' records/s per
CPU were measured on a run of this code; the GPU stages' throughputs are published or assumed
figures, marked ``measured: false``. The model is deliberately simple and linear, so it can be
checked by hand:

* CPU stages (ingest, curate, build-tasks): ``hours = records / (rate_per_cpu * cpus_used *
  parallel_efficiency) / 3600`` with ``cpus_used = min(cpus, input_files)`` for ingest when the
  number of input files is known (one compressed file is one read stream).
* GPU inference stages (synthesize, qc, evaluate): ``hours = output_tokens / (tokens_per_s_per_gpu
  * gpus) / 3600``; the per-GPU rate is a published 8B figure scaled by parameter count.
* train: ``tokens_per_s_per_gpu = mfu * peak_flops / flops_per_token`` with ``flops_per_token =
  6 * params + 12 * layers * hidden * seq_len`` (the usual dense-transformer estimate, attention
  included); ``hours = epochs * train_tokens / (tokens_per_s_per_gpu * gpus) / 3600``.
* merge: per-shard Ray tasks, bytes moved / (GB/s per task * shards); publish: one multipart
  upload stream per file.

Cost = resource-hours x the price per GPU-hour or CPU-hour (``prices`` in rates.yaml; override
them on the command line). Doubling the GPUs halves every GPU stage's hours by construction:
where real runs stop scaling linearly is discussed in docs/scaling.md, not modelled here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

RATES_FILE = Path(__file__).resolve().parent / "conf" / "rates.yaml"
GPU_STAGES = ("synthesize", "qc", "train", "evaluate")


class PlanError(ValueError):
    """An input the rates file has no figures for (unknown GPU type or model size, ...)."""


def load_rates(path: Optional[str] = None, overrides: Sequence[str] = ()) -> Dict[str, Any]:
    """rates.yaml (or ``path`` layered over it) plus omegaconf ``key=value`` overrides, as a dict."""
    from omegaconf import OmegaConf

    conf = OmegaConf.load(RATES_FILE)
    if path:
        conf = OmegaConf.merge(conf, OmegaConf.load(path))
    if overrides:
        conf = OmegaConf.merge(conf, OmegaConf.from_dotlist(list(overrides)))
    return OmegaConf.to_container(conf, resolve=True)


@dataclass
class StageEstimate:
    stage: str
    resource: str  # "gpu" or "cpu"
    work: float  # units of `unit`
    unit: str  # "records", "output tokens", "train tokens", "GB"
    rate: float  # units per second per resource unit (GPU or CPU / task)
    resources: float  # GPUs or CPUs the stage uses in parallel
    hours: float  # wall-clock hours
    resource_hours: float  # GPU-hours or CPU-hours
    cost: float  # resource_hours x price
    measured: bool  # the rate behind it was measured on this code (vs published/assumed)
    basis: str  # the arithmetic behind the rate, short
    source: str  # where the rate comes from (rates.yaml provenance)

    @property
    def provenance(self) -> str:
        """measured | published | derived | assumed (the first word of an unmeasured source)."""
        if self.measured:
            return "measured"
        word = self.source.split(":", 1)[0].split()[0].lower() if self.source else ""
        return word if word in ("published", "derived") else "assumed"


@dataclass
class Plan:
    inputs: Dict[str, Any]
    volumes: Dict[str, float]
    stages: List[StageEstimate]
    assumptions: List[str] = field(default_factory=list)

    @property
    def total_hours(self) -> float:
        return sum(s.hours for s in self.stages)

    @property
    def total_cost(self) -> float:
        return sum(s.cost for s in self.stages)

    def stage(self, name: str) -> StageEstimate:
        for s in self.stages:
            if s.stage == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "inputs": self.inputs,
            "volumes": self.volumes,
            "stages": [{**asdict(s), "provenance": s.provenance} for s in self.stages],
            "total_hours": self.total_hours,
            "total_cost": self.total_cost,
            "assumptions": self.assumptions,
        }


def _pick(table: Dict[str, Any], key: str, what: str) -> Dict[str, Any]:
    if key not in table:
        raise PlanError(f"no {what} named {key!r} in rates.yaml; known: {', '.join(sorted(table))}")
    return table[key]


def make_plan(
    logs: float,
    gpus: int,
    gpu_type: str = "h100",
    model: str = "7b",
    *,
    cpus: Optional[int] = None,
    input_files: Optional[int] = None,
    rates: Optional[Dict[str, Any]] = None,
) -> Plan:
    """Estimate every stage for ``logs`` raw records on ``gpus`` GPUs of ``gpu_type``."""
    r = rates if rates is not None else load_rates()
    if logs <= 0 or gpus <= 0:
        raise PlanError("--logs and --gpus must be positive")
    gpu = _pick(r["gpus"], gpu_type, "GPU type")
    mdl = _pick(r["models"], model, "model size")
    cpu_rates, wl, prices = r["cpu_stages"], r["workload"], r["prices"]
    cpus = int(cpus or r["cluster"]["cpus"])
    if cpus <= 0:
        raise PlanError("--cpus must be positive")
    price_gpu = float(_pick(prices["gpu_hour"], gpu_type, "GPU price"))
    price_cpu = float(prices["cpu_hour"])

    # --- volumes through the funnel (fractions measured on a real-data run; see rates.yaml)
    ingested = logs * wl["ingest_out_fraction"]
    kept = ingested * wl["curate_kept_fraction"]
    users = kept / wl["records_per_user"]
    posts = users * min(wl["records_per_user"], wl["max_posts_per_user"])  # posts sent to synthesis
    synth_out = posts * wl["per_post"]["calls"] * wl["per_post"]["output_tokens"] + users * wl["per_user"][
        "calls"
    ] * wl["per_user"]["output_tokens"]
    items = posts * wl["per_post"]["items"] + users * wl["per_user"]["calls"]  # things the judge re-reads
    judge_out = items * wl["judge"]["output_tokens"]
    examples = posts * wl["sft_examples_per_post"] + users * wl["sft_examples_per_user"]
    train_tokens = examples * wl["tokens_per_example"]
    eval_out = 2 * (examples * wl["eval_fraction"] + wl["benchmark_items"]) * wl["eval_output_tokens"]  # base + merged
    model_gb = mdl["params"] * wl["bytes_per_param"] / 1e9
    volumes = {
        "raw_logs": logs,
        "ingested_records": ingested,
        "kept_records": kept,
        "users": users,
        "posts_synthesized": posts,
        "synth_output_tokens": synth_out,
        "judged_items": items,
        "judge_output_tokens": judge_out,
        "sft_examples": examples,
        "train_tokens_per_epoch": train_tokens,
        "eval_output_tokens": eval_out,
        "model_gb": model_gb,
    }

    stages: List[StageEstimate] = []

    def cpu_stage(name: str, records: float, parallel: float) -> None:
        spec = cpu_rates[name]
        rate = float(spec["records_per_s_per_cpu"])
        eff = float(spec.get("parallel_efficiency", 1.0))
        hours = records / (rate * parallel * eff) / 3600
        stages.append(StageEstimate(
            name, "cpu", records, "records", rate, parallel, hours, hours * parallel, hours * parallel * price_cpu,
            bool(spec.get("measured", False)), f"{rate:g} rec/s/CPU x {parallel:g} CPUs x eff {eff:g}", spec["source"],
        ))

    ingest_parallel = min(cpus, input_files) if input_files else cpus
    cpu_stage("ingest", logs, ingest_parallel)
    cpu_stage("curate", ingested, cpus)

    # GPU inference: published output tokens/s for an 8B model, scaled by parameter count.
    infer = r["inference"]
    ref_params = float(infer["reference_params"])
    infer_rate = float(gpu["inference_output_tokens_per_s"]) * ref_params / float(mdl["params"])
    infer_basis = f"{gpu['inference_output_tokens_per_s']:,} out tok/s/GPU (8B) x {ref_params / 1e9:.2f}B/{mdl['params'] / 1e9:.2f}B params"
    infer_source = gpu["inference_source"]

    def gpu_stage(name: str, work: float, unit: str, rate: float, basis: str, source: str) -> None:
        hours = work / (rate * gpus) / 3600
        stages.append(StageEstimate(name, "gpu", work, unit, rate, gpus, hours, hours * gpus, hours * gpus * price_gpu,
                                    False, basis, source))

    gpu_stage("synthesize", synth_out, "output tokens", infer_rate, infer_basis, infer_source)
    gpu_stage("qc", judge_out, "output tokens", infer_rate, infer_basis, infer_source)
    cpu_stage("build-tasks", examples, cpus)

    tr = r["training"]
    flops_per_token = 6 * mdl["params"] + 12 * mdl["layers"] * mdl["hidden"] * wl["seq_len"]
    train_rate = tr["mfu"] * gpu["peak_bf16_tflops"] * 1e12 / flops_per_token
    gpu_stage(
        "train", train_tokens * wl["epochs"], "train tokens", train_rate,
        f"MFU {tr['mfu']:g} x {gpu['peak_bf16_tflops']:g} TFLOPS / {flops_per_token:.3g} FLOP/token",
        tr["source"],
    )

    io = r["io"]
    shards = max(1, math.ceil(model_gb / io["merge_shard_gb"]))
    merge_gb = 3 * model_gb  # read two models, write one
    hours = merge_gb / (io["merge_gb_per_s_per_task"] * shards) / 3600
    stages.append(StageEstimate(
        "merge", "cpu", merge_gb, "GB", io["merge_gb_per_s_per_task"], shards, hours, hours * shards,
        hours * shards * price_cpu, False, f"{shards} shard tasks x {io['merge_gb_per_s_per_task']:g} GB/s", io["source"],
    ))
    hours = model_gb / io["upload_gb_per_s"] / 3600
    stages.append(StageEstimate(
        "publish", "cpu", model_gb, "GB", io["upload_gb_per_s"], io["upload_cpus"], hours, hours * io["upload_cpus"],
        hours * io["upload_cpus"] * price_cpu, False, f"S3 multipart at {io['upload_gb_per_s']:g} GB/s", io["source"],
    ))
    gpu_stage("evaluate", eval_out, "output tokens", infer_rate, infer_basis, infer_source)

    assumptions = [
        f"corpus: {logs:,.0f} raw log records; cluster: {gpus} x {gpu_type} GPUs ({gpu['name']}), {cpus} CPUs for CPU stages"
        + (f", {input_files} input files (ingest parallelism capped at {ingest_parallel})" if input_files else ""),
        f"model: {mdl['name']} ({mdl['params'] / 1e9:.2f}B params, {mdl['layers']} layers, hidden {mdl['hidden']})",
        f"funnel (measured, {wl['funnel_source']}): ingest keeps {wl['ingest_out_fraction']:.3f}, curate keeps "
        f"{wl['curate_kept_fraction']:.3f}, {wl['records_per_user']:g} kept records per user",
        f"synthesis: <= {wl['max_posts_per_user']} posts/user x {wl['per_post']['calls']} calls x "
        f"{wl['per_post']['output_tokens']} out tokens + {wl['per_user']['calls']} user-level calls x "
        f"{wl['per_user']['output_tokens']} out tokens (assumed); the QC judge re-reads every item",
        f"training: {wl['epochs']} epochs, {wl['tokens_per_example']} tokens/example, seq {wl['seq_len']}, "
        f"MFU {tr['mfu']:g} (assumed)",
        f"prices: {price_gpu:g} per {gpu_type} GPU-hour, {price_cpu:g} per CPU-hour ({prices['currency']}; "
        f"{prices['source']})",
        "linear scaling: no start-up, model-load or autoscaler lag; see docs/scaling.md for where it breaks",
    ]
    inputs = {"logs": logs, "gpus": gpus, "gpu_type": gpu_type, "model": model, "cpus": cpus,
              "input_files": input_files}
    return Plan(inputs=inputs, volumes=volumes, stages=stages, assumptions=assumptions)


def _fmt_hours(h: float) -> str:
    if h < 1 / 60:
        return f"{h * 3600:.0f} s"
    if h < 1:
        return f"{h * 60:.1f} min"
    return f"{h:.1f} h"


def _fmt_n(x: float) -> str:
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.2f}{suffix}"
    return f"{x:.3g}"


def print_plan(plan: Plan, rates: Dict[str, Any], console=None) -> None:
    """Assumptions, then one table row per stage, then totals (rich)."""
    import sys

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console(width=None if sys.stdout.isatty() else 160)
    cur = rates["prices"]["currency"]
    console.print("[bold]Assumptions[/bold]")
    for a in plan.assumptions:
        console.print(escape(f"  - {a}"))
    console.print("[bold]Volumes[/bold]: " + ", ".join(f"{k} {_fmt_n(v)}" for k, v in plan.volumes.items()))
    table = Table(title="humanllm plan", title_justify="left")
    for col in ("stage", "on", "work", "rate per unit", "units", "hours", "resource-h", f"cost ({cur})", "rate"):
        table.add_column(col, justify="left" if col in ("stage", "on", "rate") else "right")
    for s in plan.stages:
        table.add_row(
            s.stage,
            s.resource.upper(),
            f"{_fmt_n(s.work)} {s.unit}",
            f"{s.rate:,.4g}/s",
            f"{s.resources:g}",
            _fmt_hours(s.hours),
            f"{s.resource_hours:,.1f}",
            f"{s.cost:,.2f}",
            s.provenance,
        )
    table.add_row("total", "", "", "", "", _fmt_hours(plan.total_hours), "", f"{plan.total_cost:,.2f}", "")
    console.print(table)
    console.print("[bold]Rates[/bold] (conf/rates.yaml; stages run one after another)")
    for s in plan.stages:
        console.print(escape(f"  - {s.stage} [{s.provenance}]: {s.basis}. {s.source}"))

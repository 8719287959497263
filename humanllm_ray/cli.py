"""`humanllm` — the command line.

    humanllm run [--config FILE ...] [key=value ...]        every stage, in order
    humanllm <stage> [--config FILE ...] [key=value ...]    one stage
    humanllm config show [--config FILE ...] [key=value ...]
    humanllm verify URI | load URI --to DIR | simulate --model URI --profile FILE --scenario TEXT
    humanllm plan --logs 5.5e6 --gpus 32 --gpu-type h100 --model 7b   capacity plan (conf/rates.yaml)

Overrides are omegaconf dotlist entries (``train.num_workers=2``,
``ingest.sources.reddit=[s3://bucket/RC_2019-01.zst]``); a wrong key or type is a
one-line error before any work starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Dict, List, Optional

from .config import ConfigError, HumanLLMConfig, load_config, to_yaml

log = logging.getLogger("humanllm")

STAGE_HELP = {
    "ingest": "read raw platform logs (local or s3://) into the LogRecord schema",
    "curate": "filters, cleaning, language id, PII scrubbing, dedup, per-user timelines",
    "synthesize": "LLM synthesis of personas and social QA on an actor pool",
    "qc": "LLM judge + rule checks over synthesized items",
    "build-tasks": "build the SFT task examples, split by user",
    "train": "Ray Train + DeepSpeed ZeRO SFT",
    "merge": "streaming merge of the fine-tuned and base weights",
    "publish": "upload the merged model with manifest and model card",
    "evaluate": "held-out metrics for base vs merged, report.html",
}


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", default=[], metavar="FILE", help="YAML layered over the default (repeatable)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. run.root=runs/demo")


def build_parser() -> argparse.ArgumentParser:
    from .pipeline import STAGE_NAMES

    parser = argparse.ArgumentParser(
        prog="humanllm",
        description="HumanLLM on Ray: raw user logs -> curated timelines -> synthesized P/E/B -> SFT -> merged, published model.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n  humanllm run\n  humanllm run run.root=s3://bucket/runs/r1 s3.endpoint_url=http://127.0.0.1:9000\n"
        "  humanllm train train.zero_stage=2 train.num_workers=4\n  humanllm config show --config conf/cluster.yaml",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("run", help="run every stage in order (finished stages are skipped)")
    _add_config_args(p)
    p.add_argument("--stages", default=None, help=f"comma-separated subset of: {','.join(STAGE_NAMES)}")
    p.add_argument("--json", action="store_true", help="print the stage reports as JSON at the end")

    for name in STAGE_NAMES:
        p = sub.add_parser(name, help=STAGE_HELP.get(name, name))
        _add_config_args(p)
        p.add_argument("--json", action="store_true", help="print the stage report as JSON")

    p = sub.add_parser("config", help="show the merged config")
    p.add_argument("action", choices=["show"])
    _add_config_args(p)

    p = sub.add_parser("verify", help="check a published model version against its manifest")
    p.add_argument("uri", help="{publish.uri}/{name}/{version} or {publish.uri}/{name} (latest)")
    _add_config_args(p)

    p = sub.add_parser("load", help="download and verify a published model into a local folder")
    p.add_argument("uri")
    p.add_argument("--to", required=True, metavar="DIR")
    _add_config_args(p)

    p = sub.add_parser("simulate", help="answer in character: profile + scenario -> behaviour")
    p.add_argument("--model", required=True, help="published model URI or local model folder")
    p.add_argument("--profile", required=True, help="file holding the person's profile text")
    p.add_argument("--scenario", required=True, help="the situation to respond to")
    p.add_argument("--max-new-tokens", type=int, default=128)
    _add_config_args(p)

    p = sub.add_parser("plan", help="capacity plan: hours and cost per stage (rates in conf/rates.yaml)")
    p.add_argument("--logs", type=float, required=True, help="raw log records, e.g. 5.5e6")
    p.add_argument("--gpus", type=int, required=True, help="GPUs for the GPU stages")
    p.add_argument("--gpu-type", default="h100", help="a key of gpus: in rates.yaml (h100, a100, l40s)")
    p.add_argument("--model", default="7b", help="a key of models: in rates.yaml (3b, 7b, 8b)")
    p.add_argument("--cpus", type=int, default=None, help="CPUs for the CPU stages (default: cluster.cpus)")
    p.add_argument("--input-files", type=int, default=None, help="raw input files (caps ingest parallelism)")
    p.add_argument("--rates", default=None, metavar="FILE", help="YAML layered over conf/rates.yaml")
    p.add_argument("--json", action="store_true", help="print the plan as JSON too")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="rates overrides, e.g. prices.gpu_hour.h100=5")
    return parser


def _load(args) -> HumanLLMConfig:
    return load_config(args.config, args.overrides)


def print_summary(reports: Dict[str, dict], seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"humanllm run — {seconds:.0f}s", title_justify="left")
    for col in ("stage", "status", "rows in", "rows out", "quarantined", "merged", "seconds"):
        table.add_column(col, justify="right" if col not in ("stage", "status") else "left")
    for name, r in reports.items():
        table.add_row(
            name,
            "skipped (done)" if r.get("skipped") else "ran",
            str(r.get("rows_in", "")),
            str(r.get("rows_out", "")),
            str(r.get("rows_quarantined", "")),
            str(r.get("rows_merged", "")),
            f"{r.get('seconds', 0):.1f}",
        )
    # Wide enough for the table when stdout is a pipe or a CI log (rich defaults to 80).
    console = Console(stderr=False, width=None if sys.stdout.isatty() else 120)
    console.print(table)
    pub = reports.get("publish", {}).get("published_uri")
    if pub:
        console.print(f"published model: [bold]{pub}[/bold]")
    ev = reports.get("evaluate", {}).get("report_html")
    if ev:
        console.print(f"evaluation report: {ev}")


def main(argv: Optional[List[str]] = None) -> int:
    from .runtime import setup_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "plan":  # no run config involved: rates.yaml and its overrides
        return _plan_command(args)
    try:
        cfg = _load(args)
    except ConfigError as exc:
        print(f"humanllm: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(cfg.run.log_level)

    from . import storage

    storage.configure(cfg.s3)

    if args.command == "config":
        print(to_yaml(cfg), end="")
        return 0
    if args.command in ("verify", "load", "simulate"):
        return _model_command(args, cfg)

    from .pipeline import STAGE_NAMES, run_pipeline

    t0 = time.perf_counter()
    if args.command == "run":
        stages = [s.strip() for s in args.stages.split(",")] if args.stages else None
        if stages:
            unknown = [s for s in stages if s not in STAGE_NAMES]
            if unknown:
                print(f"humanllm: error: unknown stage(s) {unknown}; stages: {STAGE_NAMES}", file=sys.stderr)
                return 2
    else:
        stages = [args.command]
    reports = run_pipeline(cfg, stages)
    print_summary(reports, time.perf_counter() - t0)
    if getattr(args, "json", False):
        print(json.dumps(reports, indent=2, default=str))
    return 0


def _plan_command(args) -> int:
    from omegaconf.errors import OmegaConfBaseException

    from .plan import PlanError, load_rates, make_plan, print_plan

    try:
        rates = load_rates(args.rates, args.overrides)
        plan = make_plan(args.logs, args.gpus, args.gpu_type, args.model, cpus=args.cpus,
                         input_files=args.input_files, rates=rates)
    except (PlanError, OmegaConfBaseException, OSError, ValueError, TypeError, KeyError) as exc:  # one line, no trace
        print(f"humanllm: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print_plan(plan, rates)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    return 0


def _model_command(args, cfg: HumanLLMConfig) -> int:
    from . import publish

    if args.command == "verify":
        result = publish.verify(args.uri)
        print(json.dumps(result, indent=2, default=str))
        return 0
    if args.command == "load":
        path = publish.load(args.uri, args.to)
        print(path)
        return 0
    from .evaluate import simulate

    with open(args.profile, encoding="utf-8") as fh:
        profile = fh.read()
    print(simulate(args.model, profile, args.scenario, max_new_tokens=args.max_new_tokens))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

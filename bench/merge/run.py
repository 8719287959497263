#!/usr/bin/env python
"""Benchmark: our streaming merge engine against mergekit's linear merge, on CPU.

Builds two Llama-architecture checkpoints from a config (random bf16 weights, sharded
safetensors + index, a few hundred MB each; built once and reused), then runs, in fresh
processes and interleaved (the order alternates every repeat):

  mergekit   mergekit-yaml (from a separate venv, default /tmp/mk-venv) with a linear
             0.5/0.5 config, --lazy-unpickle, computing in float32, writing bfloat16;
  ours       humanllm_ray.merge.merge_models(method="linear", weights=[0.5, 0.5],
             dtype="bfloat16") in one process (what one Ray shard task runs);
  ours-ray   (--with-ray) the same through Ray tasks, one per output shard.

Each run's wall time and peak RSS of its whole process tree (psutil, sampled every 10 ms,
plus the kernel's ru_maxrss of the child) are recorded; medians over --repeats go to
bench/out/merge.json with the load average before and after. The outputs are compared
tensor by tensor (identical count, max abs diff).

mergekit pins its own torch/transformers, so it lives in its own venv:
  python3 -m venv /tmp/mk-venv && /tmp/mk-venv/bin/pip install torch==2.13.0 \\
    && /tmp/mk-venv/bin/pip install -c <(echo torch==2.13.0) mergekit
Without it (--mergekit-venv missing) only our side runs and the JSON says why.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- checkpoints


def build_checkpoint(path: Path, args, seed: int) -> None:
    """A Llama checkpoint written tensor by tensor (never a whole model in memory)."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    marker = path / ".bench-complete-v2"
    spec = json.dumps({k: getattr(args, k) for k in ("hidden", "layers", "vocab", "intermediate", "heads", "kv_heads", "dtype")}, sort_keys=True)
    if marker.exists() and marker.read_text() == spec:
        return
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    config = LlamaConfig(
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        vocab_size=args.vocab,
        intermediate_size=args.intermediate,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        tie_word_embeddings=False,
        dtype=args.dtype,
        architectures=["LlamaForCausalLM"],
    )
    config.save_pretrained(str(path))
    h, i, head_dim = args.hidden, args.intermediate, args.hidden // args.heads
    kv = args.kv_heads * head_dim
    shapes = [("model.embed_tokens.weight", (args.vocab, h))]
    for layer in range(args.layers):
        p = f"model.layers.{layer}."
        shapes += [
            (p + "input_layernorm.weight", (h,)),
            (p + "self_attn.q_proj.weight", (h, h)),
            (p + "self_attn.k_proj.weight", (kv, h)),
            (p + "self_attn.v_proj.weight", (kv, h)),
            (p + "self_attn.o_proj.weight", (h, h)),
            (p + "post_attention_layernorm.weight", (h,)),
            (p + "mlp.gate_proj.weight", (i, h)),
            (p + "mlp.up_proj.weight", (i, h)),
            (p + "mlp.down_proj.weight", (h, i)),
        ]
    shapes += [("model.norm.weight", (h,)), ("lm_head.weight", (args.vocab, h))]
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(seed)
    shard_limit = args.input_shard_mb * 1024 * 1024
    groups, current, size = [], [], 0
    for name, shape in shapes:
        n = 1
        for d in shape:
            n *= d
        nbytes = n * torch.tensor([], dtype=dtype).element_size()
        if current and size + nbytes > shard_limit:
            groups.append(current)
            current, size = [], 0
        current.append((name, shape))
        size += nbytes
    groups.append(current)
    weight_map, total = {}, 0
    for idx, group in enumerate(groups):
        fname = f"model-{idx + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = {}
        for name, shape in group:
            t = torch.randn(shape, generator=gen) * 0.02 if len(shape) > 1 else 1 + 0.01 * torch.randn(shape, generator=gen)
            tensors[name] = t.to(dtype)
            weight_map[name] = fname
            total += tensors[name].numel() * tensors[name].element_size()
        save_file(tensors, str(path / fname), metadata={"format": "pt"})
        del tensors
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    marker.write_text(spec)


# --------------------------------------------------------------------------- measuring


def measure(cmd, env=None, sample_s: float = 0.01) -> dict:
    """Run cmd; wall seconds, peak RSS of its process tree (sampled) and the kernel's ru_maxrss."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = {"tree": 0}
    done = threading.Event()

    def sample():
        try:
            root = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not done.is_set():
            total = 0
            try:
                procs = [root] + root.children(recursive=True)
            except psutil.Error:
                break
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            peak["tree"] = max(peak["tree"], total)
            time.sleep(sample_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out_chunks = []
    reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    thread.join()
    reader.join()
    output = (out_chunks[0] if out_chunks else b"").decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{output[-4000:]}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,  # less sensitive than wall time to a loaded machine
        "peak_rss_tree_mb": peak["tree"] / 1e6,
        "ru_maxrss_mb": usage.ru_maxrss * 1024 / 1e6,
    }


def load_state(model_dir: Path) -> dict:
    from safetensors import safe_open

    out = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():
                out[k] = fh.get_tensor(k)
    return out


def compare(a_dir: Path, b_dir: Path) -> dict:
    import torch

    a, b = load_state(a_dir), load_state(b_dir)
    if set(a) != set(b):
        return {"same_names": False, "only_a": sorted(set(a) - set(b))[:5], "only_b": sorted(set(b) - set(a))[:5]}
    identical, max_diff, dtypes = 0, 0.0, set()
    for k in a:
        dtypes.add(f"{a[k].dtype}/{b[k].dtype}")
        if torch.equal(a[k], b[k]):
            identical += 1
        else:
            max_diff = max(max_diff, (a[k].float() - b[k].float()).abs().max().item())
    return {"same_names": True, "tensors": len(a), "identical": identical, "max_abs_diff": max_diff, "dtypes": sorted(dtypes)}


# --------------------------------------------------------------------------- contestants

OURS = """
import sys, torch
torch.set_num_threads({threads})
from humanllm_ray.merge import merge_models
s = merge_models([sys.argv[1], sys.argv[2]], sys.argv[3], method="linear", weights=[0.5, 0.5],
                 dtype="{out_dtype}", max_shard_bytes={max_shard}, use_ray={use_ray})
print(s.shards, s.tensors, s.bytes)
"""

OURS_RAY = """
import ray
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/humanllm-bench-merge", help="checkpoints and outputs (default: %(default)s)")
    parser.add_argument("--mergekit-venv", default="/tmp/mk-venv", help="venv holding mergekit (default: %(default)s)")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--intermediate", type=int, default=2816)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--kv-heads", dest="kv_heads", type=int, default=8)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"], help="checkpoint and output dtype")
    parser.add_argument("--input-shard-mb", type=int, default=200, help="input checkpoints' shard size")
    parser.add_argument("--max-shard-mb", type=int, default=2000, help="our output shard size (mergekit: --out-shard-size, same bytes)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for both sides")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--with-ray", action="store_true", help="also time ours through Ray tasks (one per output shard)")
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "merge.json"))
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    work = Path(args.workdir)
    a_dir, b_dir = work / "model_a", work / "model_b"
    if args.build_only:
        build_checkpoint(a_dir, args, seed=1)
        build_checkpoint(b_dir, args, seed=2)
        return 0
    t0 = time.perf_counter()
    # In a child process: this driver stays small (no torch), so the kernel's ru_maxrss of
    # each measured child is its own (a forked child's counts the parent image it copied).
    subprocess.run([sys.executable, __file__, "--build-only"] + (argv if argv is not None else sys.argv[1:]), check=True)
    print(f"checkpoints ready in {time.perf_counter() - t0:.1f}s: {sum(f.stat().st_size for f in a_dir.glob('*.safetensors')) / 1e6:.0f} MB each", flush=True)

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")
    elem = 2 if args.dtype in ("bfloat16", "float16") else 4
    contestants = {}
    mergekit_bin = Path(args.mergekit_venv) / "bin" / "mergekit-yaml"
    mergekit_note = None
    if mergekit_bin.exists():
        cfg = work / "mergekit.yml"
        cfg.write_text(
            "merge_method: linear\n"
            "models:\n"
            f"  - model: {a_dir}\n    parameters:\n      weight: 0.5\n"
            f"  - model: {b_dir}\n    parameters:\n      weight: 0.5\n"
            "parameters:\n  normalize: true\n"
            "dtype: float32\n"  # compute dtype, as ours
            f"out_dtype: {args.dtype}\n"
        )
        out_params = args.max_shard_mb * 1024 * 1024 // elem
        contestants["mergekit"] = lambda out: [
            str(mergekit_bin), str(cfg), str(out), "--lazy-unpickle", "--no-copy-tokenizer", "--quiet",
            "--out-shard-size", str(out_params), "-j", str(args.threads),
        ]
    else:
        mergekit_note = f"mergekit not found at {mergekit_bin}: baseline skipped (see --help for the install)"
        print(mergekit_note, flush=True)

    def ours_cmd(use_ray: bool):
        code = OURS.format(threads=args.threads, out_dtype=args.dtype, max_shard=args.max_shard_mb * 1024 * 1024, use_ray=use_ray)
        if use_ray:
            code = OURS_RAY + code
        return lambda out: [sys.executable, "-c", code, str(a_dir), str(b_dir), str(out)]

    contestants["ours"] = ours_cmd(False)
    if args.with_ray:
        contestants["ours-ray"] = ours_cmd(True)

    load_before = os.getloadavg()
    results = {name: [] for name in contestants}
    names = list(contestants)
    for rep in range(args.repeats + 1):  # repeat 0 warms the page cache and imports; not counted
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            out = work / f"out-{name}"
            shutil.rmtree(out, ignore_errors=True)
            m = measure(contestants[name](out), env=env)
            m["load1"] = os.getloadavg()[0]
            print(f"repeat {rep}{' (warm-up)' if rep == 0 else ''} {name:9s} {m['wall_s']:6.2f}s (cpu {m['cpu_s']:6.2f}s)  peak tree RSS {m['peak_rss_tree_mb']:7.0f} MB  ru_maxrss {m['ru_maxrss_mb']:7.0f} MB  load {m['load1']:.2f}", flush=True)
            if rep > 0:
                results[name].append(m)
    load_after = os.getloadavg()

    summary = {}
    for name, runs in results.items():
        summary[name] = {
            "wall_s_median": statistics.median(r["wall_s"] for r in runs),
            "cpu_s_median": statistics.median(r["cpu_s"] for r in runs),
            "peak_rss_tree_mb_median": statistics.median(r["peak_rss_tree_mb"] for r in runs),
            "ru_maxrss_mb_median": statistics.median(r["ru_maxrss_mb"] for r in runs),
            "runs": runs,
        }
    report = {
        "bench": "merge",
        "checkpoints": {k: getattr(args, k) for k in ("hidden", "layers", "vocab", "intermediate", "heads", "kv_heads", "dtype")},
        "checkpoint_mb": sum(f.stat().st_size for f in a_dir.glob("*.safetensors")) / 1e6,
        "compute_dtype": "float32 (both)",
        "out_dtype": args.dtype,
        "threads": args.threads,
        "repeats": args.repeats,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "nproc": os.cpu_count(),
        "results": summary,
    }
    if mergekit_note:
        report["mergekit"] = mergekit_note
    if "mergekit" in summary:
        mk = summary["mergekit"]
        for name in [n for n in summary if n != "mergekit"]:
            report[f"{name}_vs_mergekit"] = {
                "wall_ratio": summary[name]["wall_s_median"] / mk["wall_s_median"],
                "cpu_ratio": summary[name]["cpu_s_median"] / mk["cpu_s_median"],
                "peak_rss_tree_ratio": summary[name]["peak_rss_tree_mb_median"] / mk["peak_rss_tree_mb_median"],
                "ru_maxrss_ratio": summary[name]["ru_maxrss_mb_median"] / mk["ru_maxrss_mb_median"],
            }
        report["outputs_compared"] = compare(work / "out-ours", work / "out-mergekit")
        try:
            version = subprocess.run([str(Path(args.mergekit_venv) / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('mergekit'))"], capture_output=True, text=True).stdout.strip()
            report["mergekit_version"] = version
        except OSError:
            pass
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "results"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

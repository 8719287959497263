"""`humanllm plan`: the arithmetic on a known case, the CLI output, and GPU scaling."""

from __future__ import annotations

import json
import math

import pytest

from humanllm_ray.cli import main
from humanllm_ray.pipeline import STAGE_NAMES
from humanllm_ray.plan import GPU_STAGES, PlanError, load_rates, make_plan


def _known_rates():
    """The shipped rates with round numbers put in, so every figure below is checkable by hand."""
    rates = load_rates()
    rates["cpu_stages"]["ingest"].update(records_per_s_per_cpu=1000, parallel_efficiency=1.0)
    rates["cpu_stages"]["curate"].update(records_per_s_per_cpu=500, parallel_efficiency=0.5)
    rates["cpu_stages"]["build-tasks"].update(records_per_s_per_cpu=100, parallel_efficiency=1.0)
    rates["workload"].update(
        ingest_out_fraction=0.5, curate_kept_fraction=0.2, records_per_user=10, max_posts_per_user=5,
        per_post={"calls": 2, "items": 1, "output_tokens": 100}, per_user={"calls": 4, "output_tokens": 500},
        judge={"output_tokens": 50}, sft_examples_per_post=2, sft_examples_per_user=1, tokens_per_example=1000,
        seq_len=1000, epochs=2, eval_fraction=0.1, benchmark_items=1000, eval_output_tokens=100, bytes_per_param=2,
    )
    rates["inference"]["reference_params"] = 8e9
    rates["gpus"]["h100"].update(peak_bf16_tflops=1000, inference_output_tokens_per_s=4000)
    rates["models"]["7b"] = {"name": "test-7b", "params": 4e9, "layers": 10, "hidden": 1000}
    rates["training"]["mfu"] = 0.5
    rates["io"].update(merge_shard_gb=4, merge_gb_per_s_per_task=0.5, upload_gb_per_s=1.0, upload_cpus=8)
    rates["prices"].update(cpu_hour=0.1, gpu_hour={"h100": 2.0})
    return rates


def test_arithmetic_on_a_known_case():
    plan = make_plan(3.6e6, gpus=10, gpu_type="h100", model="7b", cpus=100, rates=_known_rates())
    v = plan.volumes
    assert v["ingested_records"] == pytest.approx(1.8e6)
    assert v["kept_records"] == pytest.approx(3.6e5)
    assert v["users"] == pytest.approx(3.6e4)
    assert v["posts_synthesized"] == pytest.approx(1.8e5)  # min(10, 5) posts per user
    # 1.8e5 posts x 2 calls x 100 + 3.6e4 users x 4 calls x 500
    assert v["synth_output_tokens"] == pytest.approx(3.6e7 + 7.2e7)
    assert v["judge_output_tokens"] == pytest.approx((1.8e5 + 1.44e5) * 50)
    assert v["sft_examples"] == pytest.approx(3.6e5 + 3.6e4)

    ingest = plan.stage("ingest")  # 3.6e6 rec / (1000 rec/s x 100 CPUs) = 36 s
    assert ingest.hours == pytest.approx(36 / 3600)
    assert ingest.cost == pytest.approx(36 / 3600 * 100 * 0.1)
    assert ingest.measured is True and ingest.provenance == "measured"
    curate = plan.stage("curate")  # 1.8e6 / (500 x 100 x 0.5) = 72 s
    assert curate.hours == pytest.approx(72 / 3600)

    # inference: 4000 tok/s for 8B -> 8000 tok/s for a 4B model; 1.08e8 tokens / (8000 x 10) = 1350 s
    synth = plan.stage("synthesize")
    assert synth.rate == pytest.approx(8000)
    assert synth.hours == pytest.approx(1350 / 3600)
    assert synth.resource_hours == pytest.approx(13500 / 3600)
    assert synth.cost == pytest.approx(13500 / 3600 * 2.0)
    assert synth.measured is False

    # training: FLOPs/token = 6 x 4e9 + 12 x 10 x 1000 x 1000 = 2.412e10;
    # rate = 0.5 x 1e15 / 2.412e10; tokens = 3.96e5 examples x 1000 x 2 epochs
    train = plan.stage("train")
    rate = 0.5e15 / 2.412e10
    assert train.rate == pytest.approx(rate)
    assert train.hours == pytest.approx(3.96e5 * 1000 * 2 / (rate * 10) / 3600)

    # merge: 8 GB model -> 2 shards; 24 GB moved at 0.5 GB/s per shard task = 24 s
    merge = plan.stage("merge")
    assert merge.resources == 2 and merge.hours == pytest.approx(24 / 3600)
    assert plan.stage("publish").hours == pytest.approx(8 / 3600)
    assert plan.total_cost == pytest.approx(sum(s.cost for s in plan.stages))


def test_doubling_gpus_halves_gpu_stage_hours_only():
    one = make_plan(5.5e6, gpus=16, gpu_type="h100", model="7b")
    two = make_plan(5.5e6, gpus=32, gpu_type="h100", model="7b")
    for name in GPU_STAGES:
        assert two.stage(name).hours == pytest.approx(one.stage(name).hours / 2), name
        assert two.stage(name).cost == pytest.approx(one.stage(name).cost), name  # same GPU-hours
    for name in ("ingest", "curate", "build-tasks", "merge", "publish"):
        assert two.stage(name).hours == pytest.approx(one.stage(name).hours), name


def test_input_files_cap_ingest_parallelism():
    wide = make_plan(5.5e6, gpus=8, cpus=256)
    one_file = make_plan(5.5e6, gpus=8, cpus=256, input_files=1)  # one .zst dump = one stream
    assert one_file.stage("ingest").resources == 1
    assert one_file.stage("ingest").hours == pytest.approx(wide.stage("ingest").hours * 256)


def test_rates_carry_provenance():
    rates = load_rates()
    for name, spec in rates["cpu_stages"].items():
        assert spec["source"] and isinstance(spec["measured"], bool), name
    assert rates["cpu_stages"]["ingest"]["measured"] is True
    assert rates["cpu_stages"]["curate"]["measured"] is True
    assert rates["training"]["measured"] is False
    for name, gpu in rates["gpus"].items():
        assert gpu["measured"] is False and gpu["inference_source"], name


def test_unknown_gpu_type_is_an_error():
    with pytest.raises(PlanError, match="no GPU type named 'tpu'"):
        make_plan(1e6, gpus=8, gpu_type="tpu")


def test_cli_prints_every_stage(capsys):
    rc = main(["plan", "--logs", "5.5e6", "--gpus", "32", "--gpu-type", "h100", "--model", "7b", "--json"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "Assumptions" in out and "humanllm plan" in out
    table, _, js = out.partition("\n{")
    for name in STAGE_NAMES:
        assert name in table, name
    data = json.loads("{" + js)
    assert [s["stage"] for s in data["stages"]] == STAGE_NAMES
    assert {s["provenance"] for s in data["stages"]} >= {"measured", "published", "assumed"}
    assert data["total_hours"] > 0 and math.isfinite(data["total_cost"])


def test_cli_overrides_and_errors(capsys):
    assert main(["plan", "--logs", "1e6", "--gpus", "8", "--json", "prices.gpu_hour.h100=0"]) == 0
    data = json.loads("{" + capsys.readouterr().out.partition("\n{")[2])
    assert all(s["cost"] == 0 for s in data["stages"] if s["resource"] == "gpu")
    assert main(["plan", "--logs", "1e6", "--gpus", "8", "--model", "70b"]) == 2
    assert "no model size named '70b'" in capsys.readouterr().err

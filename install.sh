#!/usr/bin/env bash
# radbench's install, into the active Python environment. On a machine without an NVIDIA GPU it takes PyTorch's CPU
# wheels first (some 3 GB of CUDA libraries fewer), then radbench itself with the extras named, e.g.
#   bash install.sh            # the base install
#   bash install.sh hf,lora    # with extras (see the README's table)
# RADBENCH_CUDA=1 bash install.sh keeps PyTorch's default wheels (CUDA) on any machine.
set -euo pipefail
cd "$(dirname "$0")"
target="."
if [ -n "${1:-}" ]; then target=".[$1]"; fi
if [ "${RADBENCH_CUDA:-0}" != 1 ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    if ! pip install --retries 1 --timeout 20 torch torchvision --index-url https://download.pytorch.org/whl/cpu; then
        echo "install: PyTorch's CPU wheel index is unreachable; pip takes the default wheels (with CUDA libraries)" >&2
    elif ! python -c "import torch, torchvision" >/dev/null 2>&1; then
        echo "install: the CPU wheels found do not import together; pip takes the default wheels instead" >&2
        pip uninstall -y torch torchvision
    fi
fi
pip install -e "$target"
python - <<'PY'
import torch
import torchvision

build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU only"
print(f"install: torch {torch.__version__} ({build}), torchvision {torchvision.__version__}; "
      "for CUDA wheels: RADBENCH_CUDA=1 bash install.sh")
PY

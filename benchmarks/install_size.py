"""What the README's install costs: a fresh venv, `bash install.sh` (the README's first set-up command), then its
size on disk, its package count and the PyTorch build it got (CPU or CUDA), and the install's wall time.

    python benchmarks/install_size.py [--extras hf,lora]"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def size_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        venv = Path(folder) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        start = time.perf_counter()
        command = f". {venv}/bin/activate && bash {ROOT / 'install.sh'} {args.extras}"
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode:
            sys.exit(f"install failed:\n{done.stderr[-2000:]}")
        packages = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
                                  capture_output=True, text=True, check=True).stdout.splitlines()
        build = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch; print(torch.version.cuda or 'cpu')"],
                               capture_output=True, text=True, check=True).stdout.strip()
        print(f"install.sh {args.extras or '(base)'}: {size_bytes(venv) / 1e9:.2f} GB, {len(packages)} packages, "
              f"torch build: {'CPU only' if build == 'cpu' else 'CUDA ' + build}, {seconds:.0f} s")
        print(next((line for line in done.stderr.splitlines() if line.startswith("install:")), "CPU wheels taken"))


if __name__ == "__main__":
    main()

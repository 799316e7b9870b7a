"""Packs what ``benchmarks/gpu_check.py`` needs beyond a stock CUDA image into one small archive.

The device machine lent to some sessions (one H200, 16 cores, Python 3.12, torch / JAX / flax / optax /
numpy / scipy preinstalled) has no network: the rest must travel with the working tree, 64 MiB in all.
The plain wheels do not fit (dm_control alone is 56 MB, warp-lang 149 MB), so this script downloads the
wheels for the target Python, installs them into a staging folder without their dependencies, drops what
the check never loads (dm_control's locomotion assets, MuJoCo's experimental viewer, Playground's
locomotion/manipulation meshes) and writes ``.whl/gpu_site.tar.gz``.

warp-lang is left out (too large to carry): on such a machine Playground runs on MJX (``impl=jax``);
``env.playground_impl=auto`` picks warp only where warp is installed.

    python benchmarks/gpu_bundle.py                       # for the device machine (CPython 3.12, x86_64)
    python benchmarks/gpu_bundle.py --python-version 3.11 # the same bundle for this machine, to try it here

Then, on the device machine (``carry: [".whl"]``; the command is printed at the end):

    mkdir -p /tmp/site && tar xzf .whl/gpu_site.tar.gz -C /tmp/site && export PYTHONPATH=/tmp/site:$PWD \\
      && python3 benchmarks/gpu_check.py --out $OUT/gpu_check.md
"""
from __future__ import annotations

import argparse
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: the project's runtime needs that a stock CUDA image (torch, JAX, flax, optax, numpy, scipy, ...) lacks
PACKAGES = [
    "torchrl==0.14.1", "tensordict==0.14.3", "pyvers==0.2.3", "hoptorch==0.1.4", "cloudpickle", "orjson",
    "importlib_metadata", "zipp",
    "dm-control==1.0.50", "mujoco==3.17.0", "dm-env", "dm-tree", "glfw", "pyopengl", "websockets",
    "hydra-core==1.3.8", "omegaconf==2.3.0",
    "playground==0.2.0", "mujoco-mjx==3.17.0", "brax==0.14.2", "ml-collections", "mediapy", "trimesh",
    "jaxopt", "tensorboardx",
]
#: built from source here (no wheel on the index), pure Python
SDIST_ONLY = ["antlr4-python3-runtime==4.9.3"]
#: paths (relative to site-packages) the check never loads
PRUNE = ["dm_control/locomotion", "dm_control/manipulation", "dm_control/blender", "mujoco/experimental",
         "mujoco_playground/_src/locomotion/*/xmls/assets", "mujoco_playground/_src/manipulation/*/xmls/assets",
         "mujoco_playground/_src/manipulation/*/xmls/meshes", "mujoco_playground/_src/locomotion/*/xmls/meshes"]
LIMIT_MIB = 56  # leaves room for the repository itself inside the 64 MiB that travel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--out", default=str(ROOT / ".whl" / "gpu_site.tar.gz"))
    args = parser.parse_args()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    tag = args.python_version.replace(".", "")
    platforms = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 26, 27, 28)] + ["manylinux2014_x86_64", "manylinux1_x86_64"]
    with tempfile.TemporaryDirectory() as tmp:
        wheels, stage = pathlib.Path(tmp, "wheels"), pathlib.Path(tmp, "site")
        download = [*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version", args.python_version,
                    "--implementation", "cp", "--abi", f"cp{tag}", "--abi", "abi3", "--abi", "none",
                    *[x for p in platforms for x in ("--platform", p)], "--platform", "any", "-d", str(wheels)]
        subprocess.run([*download, *PACKAGES], check=True)
        subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), *SDIST_ONLY], check=True)
        for wheel in sorted(wheels.glob("*.whl")):  # a wheel is a zip: unpacking it is installing it without scripts
            shutil.unpack_archive(str(wheel), str(stage), format="zip")
        removed = 0
        for pattern in PRUNE:
            for path in stage.glob(pattern):
                removed += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                shutil.rmtree(path)
        out = pathlib.Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(out, "w:gz") as tar:
            for path in sorted(stage.iterdir()):
                tar.add(path, arcname=path.name)
    size = out.stat().st_size / 2**20
    print(f"{out}: {size:.1f} MiB ({len(PACKAGES) + len(SDIST_ONLY)} packages, {removed / 2**20:.0f} MiB of assets pruned)")
    if size > LIMIT_MIB:
        raise SystemExit(f"the bundle is {size:.1f} MiB, over {LIMIT_MIB} MiB: it would not travel with the tree.")
    print("device command (carry: ['.whl']):\n  mkdir -p /tmp/site && tar xzf .whl/gpu_site.tar.gz -C /tmp/site && "
          "export PYTHONPATH=/tmp/site:$PWD MUJOCO_GL=disable PYTHONUNBUFFERED=1 && "
          "python3 benchmarks/gpu_check.py --out $OUT/gpu_check.md")


if __name__ == "__main__":
    main()

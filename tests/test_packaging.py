"""``pip install .`` (not editable) gives a working library and CLI, used from any folder: the C source of the
kernels ships with it, and results and data paths do not depend on the source tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_an_installed_copy_trains_from_another_folder(ml100k, tmp_path) -> None:
    wheels, target, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "project"
    work.mkdir()
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(wheels),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    if build.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {build.stderr.strip()[-300:]}")
    (wheel,) = wheels.glob("recloss_lite-*.whl")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
    )
    assert (target / "recloss_lite" / "core" / "kernels.c").is_file()
    shared = Path(os.environ.get("RECLOSS_DATA", ROOT.parent / "shared" / "data"))
    env = {
        **os.environ,
        "PYTHONPATH": str(target),
        "RECLOSS_DATA": str(shared),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    env.pop("RECLOSS_RESULTS", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, text=True, check=True)

    where = run(
        "-c",
        "import recloss_lite, recloss_lite.experiments.results as r, recloss_lite.core.kernels as k; "
        "print(recloss_lite.__file__); print(r.RESULTS_DIR); print(k.library() is not None)",
    )
    module, results_dir, compiled = where.stdout.split()
    assert module.startswith(str(target)) and Path(results_dir) == work / "book" / "results"
    assert compiled == "True"  # the kernels compiled from the shipped kernels.c
    trained = run(
        *(
            "-m recloss_lite.experiments.cli train --dataset ml-100k --loss bpr --sampler uniform "
            "--epochs 1 --out run --json --quiet"
        ).split()
    )
    assert json.loads(trained.stdout.strip().splitlines()[-1])["metrics"]["recall@20"] > 0
    assert (work / "run" / "result.json").is_file()

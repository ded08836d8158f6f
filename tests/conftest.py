"Shared test settings: offline, quiet, and the flags that decide which notebook cells and tests run."
import json, os, shutil, subprocess, sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

ROOT = Path(__file__).resolve().parents[1]
FLAGS = set(os.environ.get("TOKCLEAN_FLAGS", "").split())  # e.g. TOKCLEAN_FLAGS="slow cuda"


def tool(name: str) -> str:
    "A console script of the environment running the tests (.venv/bin/NAME), else from PATH."
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


def run_cli(tmp: Path, pipeline: str, *extra, wait=True, launcher=(), env=None, seed: int = 42):
    "Run `tokclean run PIPELINE --preset tiny` into `tmp`; return its manifest (or the process, with wait=False)."
    cmd = [*(launcher or [sys.executable]), "-m", "tokclean", "run", pipeline, "--preset", "tiny", "--set", f"run.out_dir={tmp}",
           "--set", f"score.cache_dir={tmp}/scores", "--set", f"run.seed={seed}", *extra]
    if not wait: return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((tmp / f"tiny-{pipeline}-s{seed}" / "manifest.json").read_text())


@pytest.fixture(scope="session")
def finished(tmp_path_factory) -> dict:
    "Finished tiny `fixed` and `full` runs (seed 42) in one folder, for the tests that only read them: pipeline -> manifest, and root."
    root = tmp_path_factory.mktemp("finished")
    return {p: run_cli(root, p) for p in ("fixed", "full")} | {"root": root}


def pytest_configure(config):
    "Stop at once, with the fix, when the shared data folder the tests read is missing."
    from tokclean.files import data_root
    try: data_root()
    except FileNotFoundError as e:
        pytest.exit(f"{e}. The tests read real data from the shared data folder: clone the repository beside shared/ "
                    "(so that ../shared/data exists) or set TOKCLEAN_DATA=/path/to/shared/data", returncode=2)


def pytest_collection_modifyitems(config, items):
    import torch
    for item in items:
        if "slow" in item.keywords and "slow" not in FLAGS:
            item.add_marker(pytest.mark.skip(reason="slow: set TOKCLEAN_FLAGS=slow"))
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))

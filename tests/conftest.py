"Shared test settings: offline, quiet, and the flags that decide which notebook cells and tests run."
import os, shutil, sys
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


def pytest_collection_modifyitems(config, items):
    import torch
    for item in items:
        if "slow" in item.keywords and "slow" not in FLAGS:
            item.add_marker(pytest.mark.skip(reason="slow: set TOKCLEAN_FLAGS=slow"))
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))

"""Token cleaning for LLM supervised fine-tuning (Pang et al., ICML 2025).

The functions a user reaches for first, at the package root: `clean` a pool (base and reference scores, the top k of
the response tokens), read what was kept (`kept_text`), `export_cleaned` it for TRL, Axolotl or your own loop; and the
steps one at a time: `load_tokenizer`, `load_sft`, `load_model`, `score_dataset`, `select`, `train`, `run_pipeline`.
Each name is imported when first used, so `import tokclean` stays light (no torch) until then.

This file is written by hand: nbdev exports the modules, not the package's root.
"""
__version__ = "0.1.0"

_API = {  # name at the root -> the module that defines it
    "get_config": "config", "preset": "config", "Config": "config",
    "load_tokenizer": "models", "load_model": "models",
    "load_sft": "data", "SFTData": "data",
    "score_dataset": "scoring", "load_scores": "scoring",
    "select": "selection", "Selection": "selection", "SelectionStats": "selection", "METHODS": "selection",
    "clean": "export", "Cleaned": "export", "kept_text": "export", "export_cleaned": "export",
    "train": "training", "run_pipeline": "pipeline",
    "UserError": "files", "BadInput": "files",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    "Import the module that defines `name` on first use (PEP 562), and keep the name here."
    if name not in _API: raise AttributeError(f"module 'tokclean' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f"tokclean.{_API[name]}"), name)
    globals()[name] = value
    return value


def __dir__(): return sorted(__all__)

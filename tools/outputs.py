"""Run notebooks and store the outputs that teach: tables, printed reports and figures, never progress bars or volatile text.

    python tools/outputs.py nbs/05_selection.ipynb ...   # run these notebooks (offline, as the tests do) and store their outputs
    python tools/outputs.py --check                       # fail if a stored output is one this tool would drop
    python tools/outputs.py --tidy                        # apply today's rules to the stored outputs, without running anything

A notebook runs exactly as `tests/test_notebooks.py` runs it: nbdev's flags skip the slow cells, IN_TEST is set, and it
runs in nbs/. What is kept, per output:
- stdout and results (text, HTML tables, PNG figures), unless the cell says `#| output: false` (Quarto's directive, which
  nbdev's docs honour too): that is how a cell that prints timings keeps them out of the repository;
- never stderr (warnings, tqdm bars), widgets, errors, timings (`0.15 s`), or text naming a temporary folder or this
  checkout's path, which differ on every run or machine;
- nothing over `MAX_BYTES`, so a figure cannot bloat the repository.
`nbdev-clean` runs last, so the stored notebooks pass the sync check in CI unchanged.
"""
import json, os, re, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 150_000  # one output; a 600x400 PNG figure is ~40 kB
VOLATILE = [re.compile(p) for p in (r"\r", r"\d+(\.\d+)?(it/s|s/it)\]", r"\b\d+\.\d+ ?s\b", re.escape(tempfile.gettempdir()) + "/",
                                         re.escape(str(ROOT)), r"/home/|/Users/|/work/")]
TRAINER_LOG = re.compile(r"^\{'(loss|train_runtime|eval_loss)'")  # the dicts transformers' Trainer prints: timings, rates


def _text(output: dict) -> str:
    "Every text an output carries, joined: what the volatility patterns are matched against."
    parts = [output.get("text", "")] + [v for k, v in output.get("data", {}).items() if k.startswith("text")]
    return "".join("".join(p) if isinstance(p, list) else p for p in parts)


def why_dropped(output: dict) -> str | None:
    "None when `output` teaches and is stable; else the reason it is not stored."
    kind = output.get("output_type")
    if kind == "error": return "an error"
    if kind == "stream" and output.get("name") != "stdout": return "stderr"
    if any(k.startswith("application/vnd.jupyter.widget") for k in output.get("data", {})): return "a widget"
    if any(p.search(_text(output)) for p in VOLATILE) or (kind == "stream" and any(TRAINER_LOG.match(l) for l in _text(output).splitlines())):
        return "volatile text (a progress bar, a timing or a machine's path)"
    if len(json.dumps(output)) > MAX_BYTES: return f"over {MAX_BYTES:,} bytes"
    return None


def silenced(source: str) -> bool:
    "A cell that asks for no stored output with Quarto's `#| output: false`."
    return re.search(r"^#\|\s*output:\s*false\s*$", source, re.M) is not None


def tidy_stream(output: dict) -> dict | None:
    "A stdout output without its volatile lines (progress bars, timings, the Trainer's printed logs); None if nothing is left."
    text = output["text"] if isinstance(output["text"], str) else "".join(output["text"])
    lines = [l for l in text.splitlines(keepends=True) if not TRAINER_LOG.match(l) and not any(p.search(l) for p in VOLATILE)]
    return {**output, "text": "".join(lines)} if "".join(lines).strip() else None


def kept(cell: dict) -> list:
    "The outputs of `cell` worth storing: stdout less its volatile lines, and every other output that passes `why_dropped`."
    src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    if silenced(src): return []
    outs = [tidy_stream(o) if o.get("output_type") == "stream" and o.get("name") == "stdout" else o for o in cell.get("outputs", [])]
    return [o for o in outs if o is not None and why_dropped(o) is None]


def show_figures(cell):
    "What Jupyter's inline backend does at the end of a cell: show the figures it left open (once), then close them."
    import base64, io
    import matplotlib.pyplot as plt
    shown = any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))  # a returned figure is already shown
    for num in plt.get_fignums():
        fig = plt.figure(num)
        if not shown:
            png = io.BytesIO(); fig.savefig(png, format="png", dpi=80, bbox_inches="tight")
            cell.outputs.append({"output_type": "display_data", "metadata": {},
                                 "data": {"image/png": base64.b64encode(png.getvalue()).decode(), "text/plain": [repr(fig)]}})
        plt.close(fig)


def run_and_store(path: Path) -> dict:
    "Run notebook `path` like the tests do and write back its kept outputs; return counts of kept and dropped outputs."
    from fastcore.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    from nbdev.processors import NBProcessor
    from nbdev.test import _skip_cell
    flags = set(os.environ.get("TOKCLEAN_FLAGS", "").split())
    skip = [f for f in "slow cuda hub".split() if f not in flags]
    ran = NBProcessor(path, rm_directives=False, process=True).nb  # cells carry the directives the runner reads
    os.environ["IN_TEST"] = "1"
    shell = CaptureShell(path)
    with working_directory(path.parent):
        shell.run_all(ran, exc_stop=True, preproc=_skip_cell(ran, skip, sorted(flags)), postproc=show_figures,
                      cell_timeout=900)
    nb, counts = read_nb(path), {"kept": 0}
    for cell, done in zip(nb.cells, ran.cells, strict=True):
        if cell.cell_type != "code": continue
        cell.outputs = kept(done)
        counts["kept"] += len(cell.outputs)
        for o in done.get("outputs", []):
            why = "`#| output: false`" if silenced(done.source) else why_dropped(o)
            if why: counts[why] = counts.get(why, 0) + 1
    write_nb(nb, path)
    return counts


def untidy(path: Path) -> list[str]:
    "Stored outputs of notebook `path` that this tool would not have kept, as 'cell N: reason'."
    nb = json.loads(path.read_text())
    out = []
    for i, cell in enumerate(nb["cells"]):
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for o in cell.get("outputs", []):
            why = "the cell says `#| output: false`" if silenced(src) else why_dropped(o)
            if why: out.append(f"{path.name} cell {i}: {why}")
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    if args == ["--check"]:
        bad = [line for nb in sorted((ROOT / "nbs").glob("*.ipynb")) for line in untidy(nb)]
        print("\n".join(bad) or "every stored output is one tools/outputs.py keeps")
        sys.exit(1 if bad else 0)
    if args == ["--tidy"]:
        for nb in sorted((ROOT / "nbs").glob("*.ipynb")):
            data = json.loads(nb.read_text())
            for cell in data["cells"]:
                if cell["cell_type"] == "code": cell["outputs"] = kept(cell)
            nb.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        args = []
    elif not args: sys.exit(__doc__)
    for name in args:
        counts = run_and_store(Path(name).resolve())
        print(f"{name}: kept {counts.pop('kept')} outputs; dropped " + (", ".join(f"{n} ({why})" for why, n in counts.items()) or "none"),
              flush=True)
    subprocess.run([str(Path(sys.executable).parent / "nbdev-clean")], cwd=ROOT, check=True)

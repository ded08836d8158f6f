"""Convert notebooks to and from the percent format, for editing notebooks as text.

    python tools/nbpy.py to-nb src.py nbs/02_data_reading.ipynb    # write (or rewrite) a notebook
    python tools/nbpy.py to-py nbs/02_data_reading.ipynb out.py     # dump a notebook for editing

The notebook stays the source of truth: convert, edit, convert back, then `nbdev-clean`.
A cell whose source is unchanged keeps its id and its stored outputs; an edited cell comes back without outputs, so
run `python tools/outputs.py NOTEBOOK` (or `make outputs`) to store what it shows now.
"""
import hashlib, json, sys
from pathlib import Path

MD, CODE = "# %% [markdown]", "# %%"


def _cell(kind, lines):
    text = "\n".join(lines).strip("\n")
    if kind == "markdown":
        text = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in text.splitlines())
        return {"cell_type": "markdown", "metadata": {}, "source": text}
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": text}


def py_to_nb(src: str) -> dict:
    cells, kind, buf = [], None, []
    for line in src.splitlines():
        if line.startswith(CODE):
            if kind: cells.append(_cell(kind, buf))
            kind, buf = ("markdown" if line.startswith(MD) else "code"), []
        else: buf.append(line)
    if kind: cells.append(_cell(kind, buf))
    meta = {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}}
    return {"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}


def nb_to_py(nb: dict) -> str:
    out = []
    for c in nb["cells"]:
        src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        if c["cell_type"] == "markdown":
            out += [MD] + [("# " + l).rstrip() for l in src.splitlines()]
        else: out += [CODE] + src.splitlines()
        out.append("")
    return "\n".join(out)


def keep_ids(nb: dict, old: dict | None) -> dict:
    "Reuse the cell ids and outputs of `old` for cells whose source is unchanged; hash the source for new cells (no churn)."
    src = lambda c: "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
    known = {src(c): c for c in (old or {}).get("cells", []) if "id" in c}
    for c in nb["cells"]:
        was = known.get(src(c), {})
        c["id"] = was.get("id") or hashlib.sha1(src(c).encode()).hexdigest()[:8]
        if c["cell_type"] == "code" and was.get("cell_type") == "code": c["outputs"] = was.get("outputs", [])
    return nb


if __name__ == "__main__":
    cmd, a, b = sys.argv[1:4]
    if cmd == "to-nb":
        old = json.loads(Path(b).read_text()) if Path(b).exists() else None
        Path(b).write_text(json.dumps(keep_ids(py_to_nb(Path(a).read_text()), old), indent=1) + "\n")
    elif cmd == "to-py": Path(b).write_text(nb_to_py(json.loads(Path(a).read_text())))
    else: sys.exit(f"unknown command {cmd!r}: use to-nb or to-py")

"""Write README.md from nbs/index.ipynb (quarto, nbdev's usual route, is not installable here).

    python tools/readme.py          # write README.md
    python tools/readme.py --check  # exit 1 if README.md is out of date
Markdown cells are copied, links to a notebook (`05_selection.ipynb`, a sibling of index.ipynb in Lab and on the site)
pointed at `nbs/`; code cells become ```python blocks (cells flagged `#| hide` are left out),
followed by their text output when the notebook was saved with outputs.
"""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = "<!-- Generated from nbs/index.ipynb by tools/readme.py: edit the notebook, then run `make readme`. -->\n\n"


def _text(src) -> str:
    return "".join(src) if isinstance(src, list) else src


def _output(cell) -> str:
    texts = [_text(o.get("text", "")) or _text(o.get("data", {}).get("text/plain", "")) for o in cell.get("outputs", [])]
    body = "".join(texts).rstrip()
    return f"\n```\n{body}\n```" if body else ""


def render(nb: dict) -> str:
    parts = []
    for cell in nb["cells"]:
        src = _text(cell["source"]).strip()
        if not src: continue
        if cell["cell_type"] == "markdown": parts.append(re.sub(r"\]\((\w+\.ipynb)\)", r"](nbs/\1)", src))
        elif not any(l.replace(" ", "").startswith(("#|hide", "#|default_exp")) for l in src.splitlines()):
            parts.append(f"```python\n{src}\n```" + _output(cell))
    return HEADER + "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    text = render(json.loads((ROOT / "nbs" / "index.ipynb").read_text()))
    readme = ROOT / "README.md"
    if "--check" in sys.argv:
        if not readme.exists() or readme.read_text() != text: sys.exit("README.md is out of date with nbs/index.ipynb: run `make readme`")
    else: readme.write_text(text)

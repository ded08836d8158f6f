"""Build the documentation site from the notebooks into _docs/ (`make docs`): one page per notebook, index.ipynb as the index.

    python tools/docs.py            # nbdev's processing, then Quarto (nbdev_docs) if `quarto` is on PATH, else nbconvert
    python tools/docs.py --pages    # the page each notebook gets, as `notebook -> page`

Both routes start from nbdev's own processing (`_proc/`: show_doc for every export, `#| hide` cells dropped, the title and
description of each notebook as its front matter) and name pages as nbdev does (`05_selection.ipynb` -> `selection.html`).
- With Quarto (the `quarto-cli` wheel puts it in .venv/bin) it is `nbdev_docs`: nbdev's site, sidebar and search.
- Without it, each processed notebook is rendered with nbconvert, with a sidebar of every page. This is the route where the
  `quarto-cli` wheel cannot install: it is a source package that downloads Quarto from GitHub while it builds.
The stored outputs are shown as stored: nothing but what show_doc needs is executed, so the site builds in a minute or two.
"""
import html, os, re, shutil, sys, warnings
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
os.chdir(ROOT)  # nbdev reads pyproject.toml from the working directory
from nbdev.config import get_config, nbpath2html  # noqa: E402
import nbdev.processors  # noqa: E402

CFG = get_config()
FLAGS = CFG.tst_flags.split()  # slow cuda hub
_nbdev_do_eval = nbdev.processors._do_eval


def show_doc_needs(cell) -> bool:
    """Whether nbdev's show_doc pass must execute `cell`: exports, cells of imports only, and show_doc calls.

    nbdev also executes any cell that contains an import, flagged ones too: in these lessons that is scoring, training and
    whole `#| slow` SmolLM2 runs, for pages that show the stored outputs anyway. The exported cells are the module itself,
    so they run on their own, as `import tokclean.X` does."""
    with warnings.catch_warnings():  # nbdev's advice to split imports from code: not needed, since those cells do not run here
        warnings.simplefilter("ignore")
        if not _nbdev_do_eval(cell): return False
    if cell.directives_.keys() & set(FLAGS): return False
    if cell.directives_.keys() & {"export", "exports", "exporti", "exec_doc"}: return True
    import ast
    trees = cell.parsed_() or []
    return all(isinstance(t, (ast.Import, ast.ImportFrom)) for t in trees) or nbdev.processors._show_docs(trees)


nbdev.processors._do_eval = show_doc_needs  # read as a module global by exec_show_docs; serial runs (n_workers=0) see it


def pages() -> dict[str, str]:
    "Each notebook's page, as nbdev names it: index.ipynb -> index.html, 05_selection.ipynb -> selection.html."
    return {p.name: nbpath2html(p).name for p in sorted(CFG.nbs_path.glob("*.ipynb"))}


DIRECTIVE = re.compile(r"^#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$")


def _front(nb) -> dict:
    "The front matter nbdev's processing puts in the first raw cell (title, description, output-file); the cell is removed."
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "raw" and cell.source.startswith("---"):
            del nb.cells[i]
            return yaml.safe_load(cell.source.strip().strip("-")) or {}
    return {}


def _quarto_directives(nb):
    "What Quarto does with the `#| echo/output/include` directives nbdev leaves on the processed cells."
    keep = []
    for cell in nb.cells:
        if cell.cell_type != "code": keep.append(cell); continue
        lines = cell.source.splitlines()
        opts = dict(m.groups() for l in lines if (m := DIRECTIVE.match(l)))
        cell.source = "\n".join(l for l in lines if not DIRECTIVE.match(l)).strip()
        if opts.get("include") == "false": continue
        if opts.get("output") == "false": cell.outputs = []
        tags = cell.metadata.setdefault("tags", [])
        if opts.get("echo") == "false" or not cell.source: tags.append("remove_input")
        keep.append(cell)
    nb.cells = keep


def _links(text: str, names: dict) -> str:
    "Links to a notebook (`05_selection.ipynb`) become links to its page."
    return re.sub(r'href="(?:\./)?([\w.-]+\.ipynb)(#[^"]*)?"', lambda m: f'href="{names.get(m[1], m[1])}{m[2] or ""}"', text)


SIDEBAR_CSS = """<style>
body { margin-left: 17rem; }
nav.tc-side { position: fixed; top: 0; left: 0; bottom: 0; width: 16rem; overflow-y: auto; padding: 1rem; font: 14px/1.5 sans-serif;
  background: #f7f7f9; border-right: 1px solid #ddd; }
nav.tc-side a { display: block; color: #2c3e50; text-decoration: none; padding: .1rem 0; }
nav.tc-side a.here { font-weight: bold; color: #2780e3; }
nav.tc-side h2 { font-size: 1.1rem; margin: 0 0 .6rem; }
.tc-lead { font-size: 1.1rem; color: #555; }
.jp-OutputArea-output table td { white-space: nowrap; }  /* "43.49 ± 0.65" on one line; a wide table scrolls */
.jp-OutputArea-output { overflow-x: auto; }
.jp-InputArea pre, .jp-RenderedText pre { white-space: pre-wrap; overflow-wrap: anywhere; }  /* long lines wrap, none is cut off */
</style>"""


def local_mathjax(out: Path) -> str | None:
    """MathJax 2 from the `jupyter-server-mathjax` wheel (the docs extra), copied beside the pages so that `$O(N \\log N)$`
    renders offline too; None (nbconvert's CDN copy) where that package is missing."""
    try: import jupyter_server_mathjax
    except ImportError: return None
    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    shutil.copytree(static, out / "mathjax", ignore=shutil.ignore_patterns("localization", "*.otf", "*.eot", "*.svg"))
    return "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def build_without_quarto(cache: Path, out: Path):
    "Render each processed notebook in `cache` with nbconvert into `out`, with a sidebar linking every page."
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor
    names, docs = pages(), {}
    for name in names:
        nb = nbformat.read(cache / name, as_version=4)
        for cell in nb.cells:  # nbdev leaves its own marks (`has_sd`) that nbconvert's validation refuses
            for key in set(cell) - {"cell_type", "id", "metadata", "source", "outputs", "execution_count", "attachments"}: del cell[key]
            cell.metadata.pop("execution", None)
        docs[name] = (nb, _front(nb))
    titles = {name: front.get("title") or Path(name).stem for name, (nb, front) in docs.items()}
    exporter = HTMLExporter(template_name="lab", exclude_input_prompt=True, exclude_output_prompt=True)  # as Quarto: no In [ ]
    exporter.register_preprocessor(TagRemovePreprocessor(remove_input_tags={"remove_input"}, enabled=True), enabled=True)
    shutil.rmtree(out, ignore_errors=True); out.mkdir(parents=True)
    if url := local_mathjax(out): exporter.mathjax_url = url
    order = sorted(names, key=lambda n: (n != "index.ipynb", n))
    for name in order:
        nb, front = docs[name]
        _quarto_directives(nb)
        head = f"# {html.escape(titles[name])}\n\n" + (f'<p class="tc-lead">{html.escape(front["description"])}</p>' if front.get("description") else "")
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(head))
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": titles[name]}})
        side = "".join(f'<a href="{names[n]}"{" class=here" if n == name else ""}>{html.escape(titles[n])}</a>' for n in order)
        side = f'<nav class="tc-side"><h2><a href="index.html">{html.escape(CFG.lib_name)}</a></h2>{side}</nav>'
        body = body.replace("</head>", SIDEBAR_CSS + "</head>", 1)
        body = re.sub(r"(<body[^>]*>)", lambda m: m[1] + side, body, count=1)
        (out / names[name]).write_text(_links(body, names))


def main():
    import nbdev.quarto
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])  # the venv's quarto first
    if shutil.which("quarto"):
        nbdev.quarto.nbdev_docs.__wrapped__(n_workers=0)
        return print(f"built {CFG.doc_path.name}/ with Quarto (nbdev_docs)")
    from nbdev.serve import proc_nbs
    nbdev.quarto.refresh_quarto_yml()
    cache = proc_nbs(CFG.nbs_path, n_workers=0)
    build_without_quarto(cache, CFG.doc_path)
    print(f"built {CFG.doc_path.name}/ with nbconvert: Quarto is not installed (the quarto-cli wheel downloads it while it "
          "installs, which needs github.com)")


if __name__ == "__main__":
    if sys.argv[1:] == ["--pages"]: print("\n".join(f"{nb} -> {page}" for nb, page in pages().items()))
    else: main()

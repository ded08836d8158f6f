"""The lessons in a real Jupyter kernel, as a reader of the walkthroughs runs them (`make lab`), not through execnb.

nbclient drives an ipykernel registered as `tokclean` in a temporary Jupyter folder (nothing is written to ~). The cells that
run are exactly those `tests/test_notebooks.py` runs: nbdev's `nb_test_cells` with the same flags, so `#| slow`, `#| cuda`
and `#| hub` cells are left out unless TOKCLEAN_FLAGS asks, and IN_TEST is set as nbdev sets it. Each notebook must run
without an error and without "IProgress not found" (tqdm.auto falls back to text bars without ipywidgets), and every cell
whose stored output is rich (an HTML table or token example, a figure) must render rich in the kernel too, not as a repr.
CI runs three quick lessons: data (02_data_reading, ~5 s), selection (05_selection, ~25 s) and the path to the training loss
(02b_one_token, ~20 s: a LoRA model's loss over kept tokens). 06_training itself takes 100-160 s in a kernel on 2 cores against
36 s under execnb (the Trainer's widget bars and HTML progress table), so it runs, with every other library notebook, under
`make slow`.
"""
import os, re, subprocess, sys

import pytest

nbclient = pytest.importorskip("nbclient", reason="the kernel run needs nbclient and ipykernel (the dev extra)")
pytest.importorskip("ipykernel", reason="the kernel run needs nbclient and ipykernel (the dev extra)")
import nbformat
from nbdev.test import nb_test_cells

from conftest import FLAGS, ROOT
from test_notebooks import TST_FLAGS

KERNEL = "tokclean"
RICH = ("text/html", "image/png")
REPR = re.compile(r"<(IPython\.core\.display\.\w+|Figure size [^>]*|[\w.]+ object at 0x[0-9a-f]+)>")  # what a lost rich output prints
CI = ["02_data_reading", "05_selection", "02b_one_token"]  # the quickest lessons that show data, selection and training
LIBRARY = sorted(p.stem for p in (ROOT / "nbs").glob("*.ipynb") if "default_exp" in p.read_text())


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    "Register this interpreter as kernel `tokclean` in a temporary Jupyter folder that the kernel run alone looks in."
    prefix = tmp_path_factory.mktemp("jupyter")
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", KERNEL,
                    "--display-name", "tokclean (test)"], check=True, capture_output=True)
    return prefix / "share" / "jupyter"


def cells_to_run(path):
    "The notebook at `path` as the cells the tests run (flags honoured), each keeping the index of its stored cell."
    skip = [f for f in TST_FLAGS if f not in FLAGS]
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": KERNEL, "display_name": KERNEL, "language": "python"}})
    for cell in nb_test_cells(path, skip_flags=skip, force_flags=sorted(FLAGS)):
        nb.cells.append(nbformat.v4.new_code_cell(cell.source, metadata={"stored": cell.idx_}))
    return nb


def mimes(outputs):
    return {m for o in outputs for m in o.get("data", {})}


def problems(ran, stored):
    "What a reader would see go wrong in the kernel's outputs `ran`, against the outputs stored in notebook `stored`."
    out = []
    for cell in ran.cells:
        i, texts = cell.metadata["stored"], []
        for o in cell.outputs:
            if o.output_type == "stream": texts.append(o.text)
            elif not set(o.get("data", {})) & set(RICH): texts.append(o.get("data", {}).get("text/plain", ""))
        text = "".join(texts)
        if "IProgress not found" in text: out.append(f"cell {i}: IProgress not found (ipywidgets missing in the kernel)")
        if m := REPR.search(text): out.append(f"cell {i}: a rich output printed as its repr {m.group(0)}")
        lost = mimes(stored.cells[i].get("outputs", [])) & set(RICH) - mimes(cell.outputs)
        if lost: out.append(f"cell {i}: stored {sorted(lost)}, the kernel showed only {sorted(mimes(cell.outputs)) or 'nothing'}")
    return out


def run_in_kernel(name, kernel, monkeypatch):
    path = ROOT / "nbs" / f"{name}.ipynb"
    monkeypatch.setenv("JUPYTER_PATH", str(kernel))
    monkeypatch.setenv("IN_TEST", "1")  # as nbdev's runner sets it
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))  # this tree's tokclean
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    ran = cells_to_run(path)
    nbclient.NotebookClient(ran, kernel_name=KERNEL, timeout=900, resources={"metadata": {"path": str(path.parent)}}).execute()
    assert problems(ran, nbformat.read(path, as_version=4)) == []


@pytest.mark.parametrize("name", CI)
def test_lesson_in_kernel(name, kernel, monkeypatch):
    run_in_kernel(name, kernel, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in LIBRARY if n not in CI])
def test_library_in_kernel(name, kernel, monkeypatch):
    run_in_kernel(name, kernel, monkeypatch)

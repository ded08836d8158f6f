"The package and the README must be exactly what the notebooks export; notebooks must be clean."
import json, shutil, subprocess, sys

from conftest import ROOT, tool


def _copy_project(dst):
    for name in ("pyproject.toml", "README.md"): shutil.copy(ROOT / name, dst / name)
    for name in ("nbs", "tokclean", "tools"): shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__"))


def _changed(a, b, pattern):
    names = sorted({p.relative_to(a) for p in a.glob(pattern)} | {p.relative_to(b) for p in b.glob(pattern)})
    return [str(n) for n in names if not (a / n).exists() or not (b / n).exists() or (a / n).read_bytes() != (b / n).read_bytes()]


def test_export_leaves_no_diff(tmp_path):
    _copy_project(tmp_path)
    subprocess.run([tool("nbdev-export")], cwd=tmp_path, check=True, capture_output=True)
    assert _changed(ROOT / "tokclean", tmp_path / "tokclean", "*.py") == [], "run `make export` and commit tokclean/"


def test_notebooks_are_clean(tmp_path):
    _copy_project(tmp_path)
    subprocess.run([tool("nbdev-clean")], cwd=tmp_path, check=True, capture_output=True)
    assert _changed(ROOT / "nbs", tmp_path / "nbs", "*.ipynb") == [], "run `make clean-nbs` and commit nbs/"


def test_readme_in_sync():
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "readme.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_stored_outputs_teach():
    "Stored outputs are ones tools/outputs.py keeps (no stderr, progress bar, widget or machine path), and lessons show some."
    sys.path.insert(0, str(ROOT / "tools"))
    from outputs import untidy
    notebooks = sorted((ROOT / "nbs").glob("*.ipynb"))
    assert [line for nb in notebooks for line in untidy(nb)] == [], "run `make outputs` and commit nbs/"
    shown = lambda nb: sum(len(c.get("outputs", [])) for c in json.loads(nb.read_text())["cells"])
    blank = [nb.name for nb in notebooks if shown(nb) == 0]
    assert len(blank) < len(notebooks) // 4, f"{len(blank)} notebooks store no output ({blank}): run `make outputs`"


def test_text_round_trip_keeps_outputs():
    "Editing a notebook as text (tools/nbpy.py) keeps the outputs of the cells whose source did not change."
    sys.path.insert(0, str(ROOT / "tools"))
    from nbpy import keep_ids, nb_to_py, py_to_nb
    old = json.loads((ROOT / "nbs" / "02b_one_token.ipynb").read_text())
    code = [i for i, c in enumerate(old["cells"]) if c["cell_type"] == "code" and c["outputs"]]
    assert code, "02b_one_token stores no output to keep"
    edited = nb_to_py(old).replace("".join(old["cells"][code[-1]]["source"]), "1 + 1", 1)
    new = keep_ids(py_to_nb(edited), old)
    assert [c.get("outputs") for c in new["cells"][:code[-1]]] == [c.get("outputs") for c in old["cells"][:code[-1]]]
    assert new["cells"][code[-1]]["outputs"] == [] and new["cells"][code[-1]]["id"] != old["cells"][code[-1]]["id"]

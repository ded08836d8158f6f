"The package and the README must be exactly what the notebooks export; notebooks must be clean."
import shutil, subprocess, sys

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

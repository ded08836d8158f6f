"Execute every notebook in nbs/ with nbdev's runner, one test per notebook."
import tomllib

import pytest

pytest.importorskip("nbdev", reason="the notebook runner needs nbdev (a machine with only the cuda tests' packages skips it)")
from nbdev.test import test_nb as run_notebook  # imported under another name so pytest does not collect it

from conftest import FLAGS, ROOT

NOTEBOOKS = sorted((ROOT / "nbs").glob("*.ipynb"))
TST_FLAGS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["nbdev"]["tst_flags"].split()


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook(nb):
    skip = [f for f in TST_FLAGS if f not in FLAGS]  # cells flagged e.g. `#| slow` run only when TOKCLEAN_FLAGS asks
    ok, seconds = run_notebook(nb, skip_flags=skip, force_flags=sorted(FLAGS))
    assert ok, f"{nb.name} failed (traceback above)"

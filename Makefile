# From a fresh clone: `make test` builds .venv and runs every test; `make demo` runs the embedded demo.
# Optional: `make lab` opens the walkthroughs in JupyterLab; `make docs` builds the documentation site into _docs/.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1

.PHONY: test demo assets venv export clean-nbs readme sync slow outputs lab lab-install docs

$(STAMP): pyproject.toml tools/install.sh
	PYTHON=$(PYTHON) bash tools/install.sh $(VENV)
	touch $@

venv: $(STAMP)

assets: $(STAMP)  ## the Alpaca-GPT4 demo file and SmolLM2 as safetensors, in tokclean's cache
	$(BIN)/tokclean assets

test: assets  ## every notebook, the sync checks and the tests in tests/
	$(OFFLINE) $(BIN)/python -m pytest -q

slow: assets  ## the same with the slow notebook cells and tests
	$(OFFLINE) TOKCLEAN_FLAGS=slow $(BIN)/python -m pytest -q

demo: assets  ## the embedded end-to-end demo on SmolLM2 and the Alpaca-GPT4 demo file
	$(BIN)/tokclean demo

export: $(STAMP)  ## notebooks -> tokclean/
	$(BIN)/nbdev-export

clean-nbs: $(STAMP)
	$(BIN)/nbdev-clean

outputs: assets  ## run every notebook and store the outputs that teach (tables, reports, figures; no progress bars)
	$(OFFLINE) $(BIN)/python tools/outputs.py nbs/*.ipynb

readme: $(STAMP)  ## nbs/index.ipynb -> README.md
	$(BIN)/python tools/readme.py

sync: export clean-nbs readme  ## everything CI checks for drift

PIN := $(VENV)/torch-pin.txt
$(PIN): $(STAMP)  # extras installed later must keep the torch build tools/install.sh chose
	$(BIN)/python -c "import torch; print('torch==' + torch.__version__)" > $@

LAB := $(VENV)/.lab-installed
$(LAB): $(PIN) pyproject.toml
	$(BIN)/python -m pip install -q -c $(PIN) -e ".[lab]"
	$(BIN)/python -m ipykernel install --sys-prefix --name tokclean --display-name "tokclean ($(VENV))"
	touch $@

lab-install: $(LAB)  ## JupyterLab, ipykernel and ipywidgets in the venv; the kernel `tokclean` registered inside it (not in ~)

lab: $(LAB) assets  ## open the walkthroughs in nbs/ in JupyterLab (offline, as the tests run them)
	$(OFFLINE) PATH="$(abspath $(BIN)):$$PATH" $(BIN)/jupyter lab --notebook-dir=nbs $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

DOCS := $(VENV)/.docs-installed
$(DOCS): $(PIN) pyproject.toml
	$(BIN)/python -m pip install -q -c $(PIN) -e ".[docs]"
	touch $@

docs: $(DOCS)  ## the documentation site in _docs/: nbdev's pages, rendered by Quarto (the quarto-cli wheel) or else nbconvert
	[ -x $(BIN)/quarto ] || $(BIN)/python -m pip install -q quarto-cli >$(VENV)/quarto-cli.log 2>&1 \
	  || echo "quarto-cli did not install (it downloads Quarto from GitHub while it builds; see $(VENV)/quarto-cli.log)"
	$(OFFLINE) PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python tools/docs.py

# Two commands do everything on a fresh Debian machine with Python 3.11+:
#   make lab    set up .venv, make sure Fashion-MNIST is here, open JupyterLab on notebooks/
#   make test   set up the same, then run unit tests and every notebook (pytest --nbval, quick mode)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.gnlib-installed
NBVAL  := --nbval --nbval-sanitize-with notebooks/sanitize.cfg --nbval-cell-timeout=900
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: install data lab test test-unit test-browser test-notebooks bench figures execute clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[dev]"
	$(PY) -W ignore::RuntimeWarning -m gnlib.norms.group_norm_cpp
	touch $@

# Offline first: the Debian package, installed with apt-get when we are root; else download.
data: install
	@$(PY) -W ignore::RuntimeWarning -m gnlib.data --no-download || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's dataset-fashion-mnist"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y dataset-fashion-mnist || \
	    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y dataset-fashion-mnist; }; \
	  fi; \
	  $(PY) -W ignore::RuntimeWarning -m gnlib.data; }

lab: data
	$(VENV)/bin/jupyter lab $(ROOT_FLAG) notebooks/

# The README's test command: unit tests and every notebook, executed and compared (quick mode).
test: data
	GNLIB_QUICK=1 $(PY) -m pytest tests notebooks $(NBVAL)

test-unit: install
	$(PY) -m pytest tests -m "not browser"

test-browser: data
	GNLIB_QUICK=1 $(PY) -m pytest tests/browser -v

test-notebooks: data
	GNLIB_QUICK=1 $(PY) -m pytest notebooks $(NBVAL)

# Re-measure and save the committed benchmark outputs (quiet machine; ~15 min).
bench: install
	$(PY) bench/bench_group_norm.py --compile --save bench/results_group_norm.txt \
	  --figure figures/group_norm_speed.png
	$(PY) bench/bench_training.py --compile --profile --ceiling --save bench/results_training.txt

# Regenerate figures/ from the committed results/ (no training).
figures: install
	$(PY) -m gnlib plot all
	$(PY) -m gnlib plot figure1 --preset long

clean:
	rm -rf $(VENV) build *.egg-info

# Re-execute notebooks in quick mode and save their outputs (what nbval compares against).
# Usage: make execute NB=notebooks/01_normalization_theory.ipynb   (default: all notebooks)
NB ?= $(wildcard notebooks/*.ipynb)
execute: install
	GNLIB_QUICK=1 $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
	  --ClearMetadataPreprocessor.enabled=True --ClearMetadataPreprocessor.clear_notebook_metadata=False \
	  --ClearMetadataPreprocessor.preserve_cell_metadata_mask=tags \
	  --ClearMetadataPreprocessor.preserve_cell_metadata_mask=jupyter $(NB)

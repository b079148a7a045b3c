# minimem — every command works on a fresh machine with Python 3 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
# nbmake: each notebook cell may take at most this many seconds.
NB_TIMEOUT ?= 300

.PHONY: help test test-fast book book-check lab bench gradcheck tour clean venv student

help:
	@echo "make book       execute every notebook and build the HTML book (book/_build/html)"
	@echo "make book-check check the built book offline in headless Chromium (math, layout, hosts)"
	@echo "make test       the whole test suite, notebooks included"
	@echo "make lab        open the notebooks in JupyterLab"
	@echo "make bench      run every benchmark (minimem bench)"
	@echo "make gradcheck  gradient-check every op, then the gradcheck/ experiments"
	@echo "make tour       a 1-2 minute guided run of every chapter"
	@echo "make student    a student's first command: install (no tests run), list the exercises"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=77" wheel

$(VENV)/.dev: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[dev,distributed]"
	@touch $@

$(VENV)/.book: pyproject.toml $(VENV)/.dev
	$(PY) -m pip install -q -e ".[dev,book]"
	@touch $@

$(VENV)/.lab: pyproject.toml $(VENV)/.dev
	$(PY) -m pip install -q -e ".[dev,notebooks]"
	@touch $@

venv: $(VENV)/.dev

# The first command in a student copy: installs, then lists the exercises; runs no tests.
student: $(VENV)/.dev
	@$(BIN)/minimem exercises list
	@echo "Next: read STUDENT.md; check one exercise with $(BIN)/minimem exercises check <id>"

# Tests and the book use small matrices: one BLAS thread beats two contending ones.
test test-fast book tour: export OPENBLAS_NUM_THREADS ?= 1

test: $(VENV)/.dev
	$(PY) -m pytest tests --nbmake notebooks --nbmake-timeout=$(NB_TIMEOUT) -p no:cacheprovider

test-fast: $(VENV)/.dev
	$(PY) -m pytest tests -x

book: $(VENV)/.book
	$(BIN)/jupyter-book build . --config book/_config.yml --toc book/_toc.yml --path-output book
	@echo "The book is at book/_build/html/index.html"

# Needs a built book and Chromium (apt-get install chromium); see book/README.md.
book-check: $(VENV)/.book
	$(PY) book/check_book.py all

lab: $(VENV)/.lab
	$(BIN)/jupyter lab notebooks

bench: $(VENV)/.dev
	$(BIN)/minimem bench

# run_all.py prints the table (computed once, by minimem gradcheck), then the experiments.
gradcheck: $(VENV)/.dev
	$(PY) gradcheck/run_all.py

tour: $(VENV)/.dev
	$(BIN)/minimem tour

clean:
	rm -rf book/_build tour_out gradcheck/out .pytest_cache

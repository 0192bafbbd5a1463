# Two commands work on a fresh clone: `make demo` and `make test`. Both install into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
LLMREC := $(VENV)/bin/llmrec
SCALE ?= small

.PHONY: install demo test test-slow bench playground report clean

$(VENV)/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV)
	touch $@

install: $(VENV)/.installed

demo: install
	$(LLMREC) models prepare
	$(LLMREC) demo --scale $(SCALE) --out runs/demo-$(SCALE)

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

bench: install
	$(PY) eval/bench_read.py

playground: install
	$(LLMREC) playground --data data/synth-$(SCALE) --adapter runs/demo-$(SCALE)/task3/adapter

report: install
	$(LLMREC) report runs/demo-$(SCALE)

clean:
	rm -rf runs .pytest_cache

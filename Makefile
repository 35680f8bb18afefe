# Each target sets itself up: a fresh clone needs nothing but Python 3.11 and pip.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast bench install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency list changes; a second call takes seconds.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) main.py

# the whole suite on two workers (a test file stays on one worker: its module fixtures run once);
# the 15 slowest tests are listed at the end (budget: 5 min in all on 2 cores, none over 60 s)
# The suite starts ~45 Python processes (CLI runs, torchrun ranks, the window): the project's
# modules are compiled once, here, and kept even where PYTHONDONTWRITEBYTECODE is set (the
# sandboxes these sessions run in set it): without them each process compiles them again.
test: $(STAMP)
	$(VENV)/bin/ruff check --quiet .
	PYTHONDONTWRITEBYTECODE= $(PY) -m compileall -q -j 0 detengine app main.py
	QT_QPA_PLATFORM=offscreen PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -q -n 2 --dist loadfile --durations=15

# the inner loop: everything but the tests marked slow (3:36 on a 2-core AVX2 EPYC, 2026-12-05:
# most of the time is in the many quick tests, not in the 24 marked slow)
test-fast: $(STAMP)
	$(VENV)/bin/ruff check --quiet .
	PYTHONDONTWRITEBYTECODE= $(PY) -m compileall -q -j 0 detengine app main.py
	QT_QPA_PLATFORM=offscreen PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -q -n 2 --dist loadfile -m "not slow" --durations=10

bench: $(STAMP)
	$(PY) bench/bench_trace.py
	$(PY) bench/bench_postprocess.py
	$(PY) bench/bench_nms_record.py
	$(PY) bench/bench_dsl.py
	$(PY) bench/bench_eval.py
	$(PY) bench/bench_train.py
	QT_QPA_PLATFORM=offscreen $(PY) bench/bench_gui.py
	QT_QPA_PLATFORM=offscreen $(PY) bench/bench_debug_views.py
	QT_QPA_PLATFORM=offscreen $(PY) bench/bench_training_latency.py

clean:
	rm -rf $(VENV) build *.egg-info

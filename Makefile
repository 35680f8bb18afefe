# Each target sets itself up: a fresh clone needs nothing but Python 3.11 and pip.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench install clean

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

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/bench_trace.py
	$(PY) bench/bench_postprocess.py
	$(PY) bench/bench_train.py
	QT_QPA_PLATFORM=offscreen $(PY) bench/bench_gui.py
	QT_QPA_PLATFORM=offscreen $(PY) bench/bench_debug_views.py
	QT_QPA_PLATFORM=offscreen $(PY) bench/bench_training_latency.py

clean:
	rm -rf $(VENV) build *.egg-info

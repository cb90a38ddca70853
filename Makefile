# Two commands do all the set-up on a fresh machine:
#   make demo   installs into .venv and runs the distribution-shift verification demo
#   make test   installs into .venv and runs the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench experiments clean ray

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: this version's CPU build is what the machine provides; nothing else may pull CUDA
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	# auto_LiRPA 0.3 declares torch<1.13; it works with today's torch after the patches in cegarnn/bounds/lirpa.py
	$(BIN)/pip install -q --no-deps auto-lirpa==0.3
	touch $(STAMP)

install: $(STAMP)

# optional: Ray for `cegarnn bench --ray` and `hydra/launcher=ray` (docs/CLUSTER.md); a large install
ray: $(STAMP)
	$(BIN)/pip install -q -e '.[test,ray]'

demo: $(STAMP)
	$(BIN)/python -m cegarnn.shift.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python experiments/bench_encoder.py

# the distribution-shift experiment (EXPERIMENTS.md): full sweep (about 50 min on 2 cores), then the report
SWEEP_DIR ?= multirun/shift_sweep/latest
experiments: $(STAMP)
	$(BIN)/cegarnn-verify -m experiment=shift_sweep hydra.sweep.dir=$(SWEEP_DIR)
	$(BIN)/cegarnn report $(SWEEP_DIR) --out experiments/results/shift_sweep

clean:
	rm -rf $(VENV)

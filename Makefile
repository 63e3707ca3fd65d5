# Two commands on a fresh machine:  `make demo`  and  `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_HSI := data/demo/hsi

.PHONY: demo demo-seismic test install lint bench serve clean

# The whole product on the demo scene: curate and publish it, then run the report's hsi-2
# experiment at the demo budget (verdict table and the report's path at the end).
demo: install $(DEMO_HSI)/polygons.gpkg
	$(BIN)/emin curate hsi --entry demo_hsi
	$(BIN)/emin experiment run hsi-2 --store demo_hsi --budget demo

$(DEMO_HSI)/polygons.gpkg: | install
	$(BIN)/emin synth hsi --out $(DEMO_HSI) --seed 0

test: install lint
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy pipeline/ models/ schemas/ experiments/

install: $(BIN)/.installed

# torch is pinned first so pip never resolves a multi-GB CUDA build of a newer torch.
$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

DEMO_SEISMIC := data/demo/seismic

demo-seismic: install $(DEMO_SEISMIC)/stations.xml
	$(BIN)/emin curate seismic --entry demo_seismic

$(DEMO_SEISMIC)/stations.xml: | install
	$(BIN)/emin synth seismic --out $(DEMO_SEISMIC) --seed 0

serve: install
	$(BIN)/emin serve

bench: install
	$(BIN)/python bench/extract.py
	$(BIN)/python bench/spectrogram.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/loader.py

clean:
	rm -rf data/published data/work runs bench/out

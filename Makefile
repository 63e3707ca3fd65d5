# Two commands on a fresh machine:  `make demo`  and  `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_HSI := data/demo/hsi

.PHONY: demo demo-seismic test install lint bench serve clean chromium

# The whole product on the demo scene: curate and publish it, then run the report's hsi-2
# experiment at the demo budget (verdict table and the report's path at the end).
demo: install $(DEMO_HSI)/polygons.gpkg
	$(BIN)/emin curate hsi --entry demo_hsi
	$(BIN)/emin experiment run hsi-2 --store demo_hsi --budget demo

$(DEMO_HSI)/polygons.gpkg: | install
	$(BIN)/emin synth hsi --out $(DEMO_HSI) --seed 0

test: install lint chromium
	$(BIN)/pytest -q

# Headless Chromium for tests/integration/test_browser_ui.py (Debian/Ubuntu `chromium`). Never fails:
# without apt-get, root or network the browser test skips and says why.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	  || command -v google-chrome >/dev/null 2>&1 \
	  || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
	       && timeout 600 sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium' >/dev/null 2>&1 \
	       && echo "installed chromium for the browser test"; } \
	  || echo "chromium not installed (no apt-get, root or network): the browser test will be skipped"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy pipeline/ models/ schemas/ experiments/ flows/

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

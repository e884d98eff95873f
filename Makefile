# Idempotent set-up and the project's two jobs. `make run` and `make test` each do all the
# set-up a fresh machine needs: the Fashion-MNIST package (as root, with apt-get), a .venv
# in the repo, and the package with its dev extras; `make test` also Chromium, in which a test
# opens the search report.
PY := .venv/bin/python
DATA := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
STAMP := .venv/.installed
CHROMIUM := /usr/bin/chromium

.PHONY: setup run test test-fast clean

setup: $(STAMP) $(DATA)

$(DATA):
	@if [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist); \
	else echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist'"; exit 1; fi

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium); \
	else echo "Chromium is missing, so the report's browser test is skipped: run 'sudo apt-get install chromium'"; fi

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

run: setup
	.venv/bin/cotsearch tune spaces/cot_stages.yaml

test: setup $(CHROMIUM)
	$(PY) -m pytest -q

# The inner loop while changing code: the tests not marked slow (no search, sweep or Ray
# cluster end to end). CI runs `make test`, every test.
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf .venv runs .pytest_cache

# Two commands on a fresh machine: `make leaderboard` and `make test`.
PY      := .venv/bin/python
VENV    := .venv/.installed
OUT     ?= runs/leaderboard
N       ?= 100
SEED    ?= 0
WORLD   ?= default
METHODS ?= noedit ft ft_l lora rsft rsft_merge
CHECKPOINTS ?= 1,10,100

.PHONY: install leaderboard test bench world clean

$(VENV): pyproject.toml
	python3 -m venv .venv
	# torch 2.13.0 CPU lies on this disk; naming it first stops pip pulling a CUDA build.
	.venv/bin/pip install -q torch==2.13.0
	.venv/bin/pip install -q -e '.[dev]'
	touch $(VENV)

install: $(VENV)

world: $(VENV)
	$(PY) -m editbench run --method noedit --world $(WORLD) --edits 1 --out $(OUT)/.world-check --quiet >/dev/null

leaderboard: $(VENV)
	$(PY) -m editbench run $(foreach m,$(METHODS),--method $(m)) --benchmark world --world $(WORLD) \
		--edits $(N) --checkpoints $(CHECKPOINTS) --seed $(SEED) --out $(OUT)
	$(PY) -m editbench report $(OUT)

test: $(VENV)
	$(PY) -m pytest -q tests

bench: $(VENV)
	$(PY) -m pytest -q benchmarks_perf --benchmark-enable --benchmark-only

clean:
	rm -rf runs .venv

# Two commands on a fresh machine: `make leaderboard` and `make test`.
PY      := .venv/bin/python
VENV    := .venv/.installed
OUT     ?= runs/leaderboard
N       ?= 100
SEED    ?= 0
WORLD   ?= default
METHODS ?= noedit ft ft_l lora rsft rsft_merge rome memit
CHECKPOINTS ?= 1,10,100
SWEEP_N ?= 100
BENCH   ?= world
ORDERS  ?= 1
# the regression suite: every registered editor, micro world, 20 edits, fixed seed
REGRESS_OUT      ?= runs/regress
REGRESS_BASELINE ?= baselines/world-micro-n20.json

.PHONY: install leaderboard compare regress baseline test bench world sweep-merge sweep-layer clean

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
		--edits $(N) --checkpoints $(CHECKPOINTS) --seed $(SEED) --orders $(ORDERS) --out $(OUT)
	$(PY) -m editbench report $(OUT)

# e.g. make compare METHODS="rome memit rsft_merge" N=100: the same edits in the same order, each
# method against the first, with paired bootstrap intervals of the differences.
compare: $(VENV)
	$(PY) -m editbench compare $(foreach m,$(METHODS),--method $(m)) --benchmark $(BENCH) --world $(WORLD) \
		--edits $(N) --checkpoints $(CHECKPOINTS) --seed $(SEED) --out runs/compare

regress: $(VENV)
	rm -rf $(REGRESS_OUT)
	$(PY) -m editbench run --method all --world micro --edits 20 --checkpoints 1,20 --seed 0 \
		--out $(REGRESS_OUT) --quiet >/dev/null
	$(PY) -m editbench regress $(REGRESS_OUT) --baseline $(REGRESS_BASELINE)

# Refreshes the committed baselines on purpose (commit the result).
baseline: $(VENV)
	rm -rf $(REGRESS_OUT)
	$(PY) -m editbench run --method all --world micro --edits 20 --checkpoints 1,20 --seed 0 \
		--out $(REGRESS_OUT) --quiet >/dev/null
	$(PY) -m editbench baseline $(REGRESS_OUT) --out $(REGRESS_BASELINE)

# R-SFT+Merge ablations: alpha x density, and the edited layer (N = SWEEP_N edits, one checkpoint).
sweep-merge: $(VENV)
	$(PY) -m editbench sweep --method rsft_merge --grid alpha=0.2,0.4,0.6,0.8 --grid density=0.1,0.2,0.5,1.0 \
		--world $(WORLD) --edits $(SWEEP_N) --checkpoints $(SWEEP_N) --seed $(SEED) --out runs/sweep-merge --quiet

sweep-layer: $(VENV)
	$(PY) -m editbench sweep --method rsft --grid layer=0,1,2,3 \
		--world $(WORLD) --edits $(SWEEP_N) --checkpoints $(SWEEP_N) --seed $(SEED) --out runs/sweep-layer --quiet

test: $(VENV)
	$(PY) -m pytest -q tests -m 'not bench'

bench: $(VENV)
	$(PY) -m pytest -q tests -m bench --benchmark-enable --benchmark-columns=min,median,mean,max,rounds

clean:
	rm -rf runs .venv

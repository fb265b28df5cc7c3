# The two quick-start commands. Each creates or reuses .venv itself (scripts/setup_venv.sh).
PY := .venv/bin/python
ARGS ?=

.PHONY: setup run suite paper test lock clean-outputs

setup:
	@bash scripts/setup_venv.sh

## Default experiment: Wall task, collect -> train -> GRASP vs CEM vs GD, prints the table.
run: setup
	$(PY) -m grasp.run -m experiment=quick $(ARGS)

## The task suite: GRASP vs CEM on every task (conf/experiment/suite/), one sweep per task.
SUITE_TASKS := $(basename $(notdir $(wildcard conf/experiment/suite/*.yaml)))
suite: setup
	@set -e; for task in $(SUITE_TASKS); do $(PY) -m grasp.run -m experiment=suite/$$task $(ARGS); done

## The paper's tables (docs/results.md): Table 1, the ablation and the short horizons, each sweep in
## outputs/paper/<name>/ with its tables/ beside it. ARGS go to every sweep (e.g. ARGS=eval.episodes=500).
PAPER_SWEEPS := paper_long_horizon paper_ablation paper_short_horizon/wall paper_short_horizon/point_maze_medium \
	paper_short_horizon/pusht paper_budget/gradient paper_budget/sampling
paper: setup
	@set -e; for exp in $(PAPER_SWEEPS); do \
		$(PY) -m grasp.run -m experiment=$$exp launcher=joblib hydra.sweep.dir=outputs/paper/$$exp $(ARGS); \
		$(PY) scripts/make_tables.py outputs/paper/$$exp; \
	done
	$(PY) scripts/make_tables.py outputs/paper/paper_budget/gradient outputs/paper/paper_budget/sampling \
		--out outputs/paper/paper_budget/tables

## The test suite (CPU, real MuJoCo, real Hydra): TEST_WORKERS pytest processes (a test file stays
## in one), each with one torch thread. Exit code 5 (no tests collected) fails.
TEST_WORKERS ?= 2
test: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

## requirements.lock: the versions of every dependency in .venv (torch excepted: TORCH_SPEC picks
## it), which the set-up installs; run after a dependency change once the suite passes.
lock: setup
	@{ echo "# The dependency set the test suite passed with (make lock); scripts/setup_venv.sh installs it."; \
	   $(PY) -m pip freeze --exclude-editable | grep -v -i '^torch=='; } > requirements.lock

clean-outputs:
	rm -rf outputs/*/ 

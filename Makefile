# The two quick-start commands. Each creates or reuses .venv itself (scripts/setup_venv.sh).
PY := .venv/bin/python
ARGS ?=

.PHONY: setup run test clean-outputs

setup:
	@bash scripts/setup_venv.sh

## Default experiment: Wall task, collect -> train -> GRASP vs CEM vs GD, prints the table.
run: setup
	$(PY) -m grasp.run -m experiment=quick $(ARGS)

## The test suite (CPU, real MuJoCo, real Hydra). Exit code 5 (no tests collected) fails.
test: setup
	$(PY) -m pytest $(ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

clean-outputs:
	rm -rf outputs/*/ 

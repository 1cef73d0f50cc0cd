# Works on a fresh machine with only Python 3.11 and apt: the first target that needs it creates .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: run test test-postgres lint bench schema clean

$(BIN)/licensing: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

run: $(BIN)/licensing
	LICENSING_SANDBOX=$${LICENSING_SANDBOX:-1} $(BIN)/licensing demo --port $(PORT)
	LICENSING_SANDBOX=$${LICENSING_SANDBOX:-1} $(BIN)/licensing serve --port $(PORT)

test: $(BIN)/licensing
	$(BIN)/pytest

lint: $(BIN)/licensing
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy domain persistence payments resolvers schema app

bench: $(BIN)/licensing
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

schema: $(BIN)/licensing
	$(BIN)/python -c "from schema.build import SDL_PATH, export_sdl; SDL_PATH.write_text(export_sdl())"

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache

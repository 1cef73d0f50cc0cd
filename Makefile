# Works on a fresh machine with only Python 3.11 and apt: the first target that needs it creates .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# localstripe (a fake Stripe from the dev extras) serves the demo's payments; its state lives in memory.
STRIPE_PORT ?= 8420

.PHONY: run test test-postgres lint lint-schema bench schema clean graphiql-assets lock

# requirements.lock pins every package (dev extras included) at the versions CI last resolved; it is
# applied as constraints, so a dependency added to pyproject.toml before `make lock` still installs.
$(BIN)/licensing: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e ".[dev]"
	touch $@

# Re-resolve the lock from pyproject.toml's ranges (after adding or bumping a dependency).
lock: $(BIN)/licensing
	$(BIN)/pip install --quiet "pip-tools>=7.4,<8"
	$(BIN)/pip-compile --quiet --upgrade --extra dev --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file requirements.lock pyproject.toml

# localstripe runs in the background for as long as the server does (the trap stops it on exit).
run: $(BIN)/licensing
	@$(BIN)/python -m app.devstripe --port $(STRIPE_PORT) --from-scratch > .localstripe.log 2>&1 & \
	stripe_pid=$$!; trap 'kill $$stripe_pid 2>/dev/null' EXIT INT TERM; \
	$(BIN)/python -m app.devstripe wait $(STRIPE_PORT); \
	export STRIPE_API_BASE=$${STRIPE_API_BASE:-http://127.0.0.1:$(STRIPE_PORT)}; \
	export LICENSING_SANDBOX=$${LICENSING_SANDBOX:-1}; \
	$(BIN)/licensing demo --port $(PORT) && $(BIN)/licensing serve --port $(PORT)

test: $(BIN)/licensing
	$(BIN)/pytest

lint: $(BIN)/licensing
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy domain persistence payments resolvers schema app

# graphql-schema-linter (npm, versions pinned by tools/schema-lint/package-lock.json; rules in its
# package.json) on the exported SDL. Needs node and npm, and the npm registry on the first run, so it is
# not part of `make lint`; CI runs both. It also checks that each rule still fires on a schema that
# breaks them all, so a rule dropped or misspelt is noticed.
SCHEMA_LINT := tools/schema-lint
SCHEMA_LINTER := $(SCHEMA_LINT)/node_modules/.bin/graphql-schema-linter --config-directory $(SCHEMA_LINT)

$(SCHEMA_LINT)/node_modules/.package-lock.json: $(SCHEMA_LINT)/package-lock.json
	@command -v npm >/dev/null || { echo "lint-schema needs node and npm (Debian: apt-get install nodejs npm)" >&2; exit 1; }
	npm ci --prefix $(SCHEMA_LINT) --no-audit --no-fund --loglevel=error

lint-schema: $(SCHEMA_LINT)/node_modules/.package-lock.json
	$(SCHEMA_LINTER) schema/schema.graphql
	@report=$$($(SCHEMA_LINTER) -f compact $(SCHEMA_LINT)/undocumented.graphql); \
	rules=$$(node -p "require('./$(SCHEMA_LINT)/package.json')['graphql-schema-linter'].rules.join(' ')"); \
	for rule in $$rules; do \
		echo "$$report" | grep -q "($$rule)" \
			|| { echo "lint-schema: rule $$rule did not fire on $(SCHEMA_LINT)/undocumented.graphql" >&2; exit 1; }; \
	done; echo "lint-schema: each rule fires on $(SCHEMA_LINT)/undocumented.graphql"

bench: $(BIN)/licensing
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

schema: $(BIN)/licensing
	$(BIN)/python -c "from schema.build import SDL_PATH, export_sdl; SDL_PATH.write_text(export_sdl())"

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache

# GraphiQL's browser files at pinned versions from the npm registry (committed: `make run` needs no step).
graphiql-assets: $(BIN)/licensing
	$(BIN)/python -m app.graphiql_assets

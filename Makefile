# make demo: install if needed, migrate, start the site on http://127.0.0.1:8000
# make test: install if needed, run the tests (pass pytest options in ARGS)
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The first of these that is Python 3.11 or 3.12 makes the virtualenv (see README: Python).
PYTHON_CANDIDATES := python3.11 python3.12 python3.13 python3

.PHONY: help setup test demo bench stop

help:
	@echo "make demo    install if needed, migrate, start the site on http://127.0.0.1:8000"
	@echo "make test    install if needed, run the tests (ARGS='-k healthz' passes options to pytest)"
	@echo "make setup   create $(VENV) and install the project with its C extension"
	@echo "make bench   run the order book benchmark"
	@echo "make stop    stop the embedded PostgreSQL and Redis"

setup: $(STAMP)

$(PY):
	@py="$(PYTHON)"; \
	if [ -z "$$py" ]; then \
	  for candidate in $(PYTHON_CANDIDATES); do \
	    if "$$candidate" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))' >/dev/null 2>&1; then \
	      py="$$candidate"; break; \
	    fi; \
	  done; \
	fi; \
	if [ -z "$$py" ]; then echo "Python 3.11 or 3.12 is needed (set PYTHON=/path/to/python)" >&2; exit 1; fi; \
	echo "Creating $(VENV) with $$("$$py" -c 'import sys; print(sys.executable, sys.version.split()[0])')"; \
	"$$py" -m venv $(VENV)

# Reinstalls only when the packaging or the C sources change; pip rebuilds matching._book in place.
$(STAMP): pyproject.toml setup.py $(wildcard matching/csrc/*) | $(PY)
	$(PY) -m pip install --disable-pip-version-check --quiet -e '.[test,bench]'
	@touch $@

test: setup
	$(PY) -m pytest $(ARGS)

demo: setup
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_user
	mkdir -p .data  # beat keeps its schedule there (with DATABASE_URL nothing else creates it)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho start

bench: setup
	$(PY) bench/book.py

stop: setup
	$(PY) -m config.embedded stop

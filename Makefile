# edgebridge: the two commands of the README are `make demo` and `make test`; the rest are steps.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian packages the brokers and tests need: the broker and its clients, kcat, Java and Maven for Kafka,
# PostgreSQL for the sink tests; systemd for systemd-analyze (the agent's unit is verified and its exposure
# scored offline, no systemd needs to run); Docker's engine, docker-compose and debootstrap for the stack
# test (tests/deploy/test_stack.py builds the images on a debootstrap base: no image registry needed);
# libfuse2 (a library, no program: looked up with ldconfig) for fusepy, which the power-cut file system of
# the tests is built on; chromium and its chromedriver for the dashboard's browser tests (Debian's build:
# no browser is downloaded at test time). Each is installed only when missing.

.PHONY: setup venv test lint demo bench brokers-up brokers-down clean

## setup: install the system packages (apt-get, as root on Debian/Ubuntu) and the virtualenv
setup: venv
	@missing=""; \
	for tool in mosquitto:mosquitto mosquitto_sub:mosquitto-clients kcat:kcat openssl:openssl mvn:maven java:openjdk-17-jre-headless initdb:postgresql systemd-analyze:systemd dockerd:docker.io docker-compose:docker-compose debootstrap:debootstrap chromium:chromium chromedriver:chromium-driver; do \
	  bin=$${tool%%:*}; pkg=$${tool##*:}; \
	  command -v $$bin >/dev/null || [ -x /usr/sbin/$$bin ] || ls /usr/lib/postgresql/*/bin/$$bin >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	for lib in libfuse.so.2:libfuse2; do \
	  so=$${lib%%:*}; pkg=$${lib##*:}; \
	  /sbin/ldconfig -p | grep -qF "$$so " || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "missing packages:$$missing (install them, e.g. sudo apt-get install$$missing)"; exit 1; \
	  fi; \
	fi

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

## test: install everything, start real Mosquitto and Kafka for the session, run the suite
test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

## demo: the main job (today: local brokers up and an event round trip through both)
demo: setup
	$(BIN)/edgebridge demo $(DEMO_ARGS)

bench: setup
	$(BIN)/python -m bench

brokers-up: setup
	$(BIN)/edgebridge brokers up

brokers-down:
	$(BIN)/edgebridge brokers down

clean:
	rm -rf $(VENV) .edgebridge .pytest_cache .mypy_cache .ruff_cache

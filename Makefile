# lambdaplane: `make run` starts the platform, `make test` runs the whole suite.
# Both install what is missing first (Debian packages, then a .venv).
SHELL := /bin/bash
PY ?= /usr/bin/python3
VENV := .venv
APT_PACKAGES := nftables libnftables1 conntrack iproute2 python3-venv curl postgresql procps iperf3 python3-seccomp
ARGS ?=

.PHONY: install run test test-fast clean bench faults soak hostile fuzz

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $@

run: install
	$(VENV)/bin/lambdaplane serve $(ARGS)

test: install
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider $(ARGS)

# Full-size robustness suites (make test runs them reduced): 50 SIGKILL trials; a soak of
# 5,000 cold starts + 50,000 warm invokes. Summaries land in bench-out/{faults,soak}.json.
faults: install
	LP_FAULTS_FULL=1 $(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/faults $(ARGS)

soak: install
	LP_SOAK_FULL=1 $(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/soak $(ARGS)

# Hostile function code and hostile zips against a live server (same size in make test).
hostile: install
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/hostile $(ARGS)

# Property-based fuzzing of the Lambda and EC2 APIs at full size (make test: ~380 examples).
fuzz: install
	LP_FUZZ_FULL=1 $(VENV)/bin/python -m pytest -q -s -p no:cacheprovider -W ignore tests/fuzz $(ARGS)

bench: install
	$(VENV)/bin/lambdaplane bench invoke $(ARGS)

clean: install
	$(VENV)/bin/lambdaplane clean

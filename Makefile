# lambdaplane: `make run` starts the platform, `make test` runs the whole suite.
# Both install what is missing first (Debian packages, then a .venv).
SHELL := /bin/bash
PY ?= /usr/bin/python3
VENV := .venv
APT_PACKAGES := nftables libnftables1 conntrack iproute2 python3-venv curl postgresql procps iperf3
# the console's libraries (npm) and its browser test (headless Chromium driven by selenium)
APT_PACKAGES += nodejs chromium chromium-driver
ARGS ?=
BIN_DIR ?= /usr/local/bin

.PHONY: install link run test test-fast clean bench faults soak hostile fuzz

install: $(VENV)/.installed link

$(VENV)/.installed: pyproject.toml lambdaplane/console/package.json lambdaplane/console/package-lock.json
	@echo "lambdaplane: checking Debian packages ($(APT_PACKAGES))"
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "lambdaplane: installing Debian packages: $$missing (apt-get, may take a minute)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@test -x $(VENV)/bin/python || { echo "lambdaplane: creating $(VENV)"; $(PY) -m venv $(VENV); }
	@echo "lambdaplane: updating pip in $(VENV)"
	$(VENV)/bin/pip install -q --upgrade pip
	@echo "lambdaplane: installing lambdaplane and its Python dependencies into $(VENV) (the first time takes a few minutes)"
	$(VENV)/bin/pip install -q -e '.[test]'
	@command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm
	cd lambdaplane/console && npm ci --ignore-scripts --no-audit --no-fund  # -> node_modules, served
	@touch $@
	@echo "lambdaplane: installed"

# As root, put the command on every shell's PATH: $(BIN_DIR)/lambdaplane → .venv/bin/lambdaplane
# (an existing file there that is not such a link is left alone, with a word).
link:
	@target=$(BIN_DIR)/lambdaplane; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "lambdaplane: not root, so not linking $$target; use $(CURDIR)/$(VENV)/bin/lambdaplane"; \
	elif [ -e "$$target" ] && [ ! -L "$$target" ]; then \
	  echo "lambdaplane: $$target exists and is not a link; left alone"; \
	elif [ "$$(readlink "$$target")" != "$(CURDIR)/$(VENV)/bin/lambdaplane" ]; then \
	  ln -sfn "$(CURDIR)/$(VENV)/bin/lambdaplane" "$$target" && \
	  echo "lambdaplane: linked $$target -> $(CURDIR)/$(VENV)/bin/lambdaplane"; \
	fi

run: install
	@echo "lambdaplane: starting the server (Ctrl-C stops it and removes what it made)"
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

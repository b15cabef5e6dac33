# gitops-engine v3 needs Go 1.27: the go command fetches this toolchain
# itself from the module proxy on first use.
export GOTOOLCHAIN := go1.27.3

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.1.0-dev)
LDFLAGS := -X kubetunnel/version.Version=$(VERSION)

# Packages whose tests run with the race detector: the tunnel, and the code
# on both ends of it.
RACE_PKGS := ./tunnel/... ./kas/... ./agentk/... ./kasproxy/... ./internal/streamhttp/...

.PHONY: all build testbin test test-e2e test-chart demo lint fuzz images deploy-manifest clean bench

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/kas ./cmd/agentk

# The test control plane, built from our own module graph (go.mod `tool`
# lines). Rebuilt only when the module graph changes.
testbin: bin/etcd bin/kube-apiserver

bin/etcd: go.mod go.sum
	$(GO) build -o $@ go.etcd.io/etcd/server/v3

bin/kube-apiserver: go.mod go.sum
	$(GO) build -o $@ k8s.io/kubernetes/cmd/kube-apiserver

# Everything: unit, integration (race) and end-to-end tests on a real API
# server, then the load test (1,000 agents, 60 s of requests) on its own,
# so that it neither slows the other packages nor is slowed by them.
test: build testbin lint
	$(GO) test -race -timeout 20m $(RACE_PKGS)
	$(GO) test -timeout 30m $$($(GO) list ./... | grep -v -E '^kubetunnel/(tunnel|kas|agentk|kasproxy|internal/streamhttp|test/load)(/|$$)')
	$(GO) test -timeout 10m -v ./test/load

test-e2e: build testbin
	$(GO) test -timeout 30m ./test/e2e/...

test-chart: testbin
	$(GO) test ./test/build/... ./test/chart/...

# The issue 6 suite (test/bench): every path side by side in one run,
# about 15 minutes on 2 cores. Writes the generated section of
# docs/benchmarks.md and the plots in docs/img/ from bin/bench.txt. The
# test binary is built first so no compiler runs during a measurement.
# BENCH_NOTE="..." adds a remark to the section (say if the machine was busy).
BENCH_SUITE := ^Benchmark(LadderGet|LadderThroughput|Streams|HeadOfLine|IdleAgents|ReconnectStorm)$$
bench:
	@mkdir -p bin
	$(GO) test -c -o bin/bench.test ./test/bench
	cd test/bench && ../../bin/bench.test -test.run '^$$' -test.bench '$(BENCH_SUITE)' \
	  -test.benchtime 1x -test.timeout 60m > ../../bin/bench.txt 2>&1; \
	  status=$$?; cat ../../bin/bench.txt; exit $$status
	$(GO) run ./test/bench/report -in bin/bench.txt -md docs/benchmarks.md -img docs/img -note "$(BENCH_NOTE)"

# Container images (needs a Docker engine; CI checks the same build flags).
images:
	docker build -f Dockerfile.kas --build-arg VERSION=$(VERSION) -t kubetunnel/kas:$(VERSION) .
	docker build -f Dockerfile.agentk --build-arg VERSION=$(VERSION) -t kubetunnel/agentk:$(VERSION) .

# deploy/agentk.yaml is generated from chart/agentk.
deploy-manifest:
	$(GO) test ./test/chart -run TestDeployManifestUpToDate -update

# A local control plane, a git repo with an example agent config, kas and
# agentk, all on loopback; stays up until Ctrl-C.
demo: build testbin
	$(GO) run ./test/e2e/demo

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Run each fuzz target for a while (make fuzz FUZZTIME=1m).
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run XXX -fuzz FuzzReadHello -fuzztime $(FUZZTIME) ./tunnel
	$(GO) test -run XXX -fuzz FuzzHelloFromHeader -fuzztime $(FUZZTIME) ./tunnel
	$(GO) test -run XXX -fuzz FuzzReadReply -fuzztime $(FUZZTIME) ./tunnel
	$(GO) test -run XXX -fuzz FuzzWSConnRead -fuzztime $(FUZZTIME) ./tunnel
	$(GO) test -run XXX -fuzz 'FuzzParse$$' -fuzztime $(FUZZTIME) ./agentcfg
	$(GO) test -run XXX -fuzz FuzzParsePath -fuzztime $(FUZZTIME) ./kasproxy
	$(GO) test -run XXX -fuzz FuzzVerifyToken -fuzztime $(FUZZTIME) ./kas/replicas
	$(GO) test -run XXX -fuzz FuzzMatch -fuzztime $(FUZZTIME) ./gitops/manifests
	$(GO) test -run XXX -fuzz FuzzStripCallerHeaders -fuzztime $(FUZZTIME) ./internal/kubehttp
	$(GO) test -run XXX -fuzz FuzzTransportResponse -fuzztime $(FUZZTIME) ./internal/streamhttp
	$(GO) test -run XXX -fuzz FuzzServerRequest -fuzztime $(FUZZTIME) ./internal/streamhttp

clean:
	rm -rf bin

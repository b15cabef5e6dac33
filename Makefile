# gitops-engine v3 needs Go 1.27: the go command fetches this toolchain
# itself from the module proxy on first use.
export GOTOOLCHAIN := go1.27.3

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.1.0-dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
# The commit goes into kas_build_info/agentk_build_info, and agentk reports
# it to kas (GitLab's agent tracker shows it).
LDFLAGS := -X kubetunnel/version.Version=$(VERSION) -X kubetunnel/version.Commit=$(COMMIT)

# The tests' own module (test/go.mod): end-to-end, chart, load and
# benchmark tests and the tools only they need (Helm SDK, gonum/plot,
# remotedialer, the test cluster's binaries), kept out of the product
# module. `go -C test` runs the go command in it; paths after -C are
# relative to test/.
TESTMOD := $(GO) -C test

# Packages whose tests run with the race detector: the tunnel, and the code
# on both ends of it.
RACE_PKGS := ./tunnel/... ./kas/... ./agentk/... ./kasproxy/... ./internal/httpserve/... ./internal/streamhttp/... ./internal/integration/...

.PHONY: all build testbin images-local test test-short test-e2e test-chart demo lint docs fuzz images deploy-manifest clean bench

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/kas ./cmd/agentk

# The test cluster, built from our own module graph (test/go.mod `tool` lines):
# etcd and kube-apiserver for every e2e test; kubelet, kube-controller-manager
# and kube-scheduler for the single-node cluster of test/e2e/realnode and
# `make demo`. Rebuilt only when the module graph changes. On 2 cores, cold:
# kube-apiserver ~10 min, kubelet ~4 min, the other two ~2 min each; with a
# warm build cache each takes seconds (mostly linking).
NODE_BINS := bin/kubelet bin/kube-controller-manager bin/kube-scheduler
testbin: bin/etcd bin/kube-apiserver $(NODE_BINS)

bin/etcd: test/go.mod test/go.sum
	@echo "==> building $@ from go.etcd.io/etcd/server/v3 (about 1 min cold)"
	$(TESTMOD) build -o $(CURDIR)/$@ go.etcd.io/etcd/server/v3

bin/kube-apiserver: test/go.mod test/go.sum
	@echo "==> building $@ from k8s.io/kubernetes (about 10 min cold on 2 cores, seconds when cached)"
	$(TESTMOD) build -o $(CURDIR)/$@ k8s.io/kubernetes/cmd/kube-apiserver

$(NODE_BINS): bin/%: test/go.mod test/go.sum
	@echo "==> building $@ from k8s.io/kubernetes (kubelet about 4 min cold on 2 cores, the others about 2; seconds when cached)"
	$(TESTMOD) build -o $(CURDIR)/$@ k8s.io/kubernetes/cmd/$*

# The images of the single-node cluster, without Docker or a registry:
# docker-archive tarballs in bin/images (agentk and kas built as their
# Dockerfiles build them, busybox for test workloads, a pause image).
# The real-node tests and `make demo` build and import them themselves.
images-local:
	$(TESTMOD) run ./cmd/images -out $(CURDIR)/bin/images -version $(VERSION)

# Everything: unit, integration (race) and end-to-end tests on a real API
# server, then the load test (1,000 agents, 60 s of requests) on its own,
# so that it neither slows the other packages nor is slowed by them.
test: build testbin lint
	$(GO) test -race -timeout 20m $(RACE_PKGS)
	$(GO) test -timeout 30m $$($(GO) list ./... | grep -v -E '^kubetunnel/(tunnel|kas|agentk|kasproxy|internal/httpserve|internal/streamhttp|internal/integration)(/|$$)')
	$(TESTMOD) test -timeout 30m $$($(TESTMOD) list ./... | grep -v -x kubetunnel/test/load)
	$(TESTMOD) test -timeout 10m -v ./load

# The quick tier, for the edit-test loop: `go test -short` over both
# modules, under a minute on a quiet 2-core machine. Tests that need the
# control plane, a real node or Redis, or run long, are left out (they
# check testing.Short()); `make test` is the real check and runs them all.
test-short:
	$(GO) test -short ./...
	$(TESTMOD) test -short ./...

test-e2e: build testbin
	$(TESTMOD) test -timeout 30m ./e2e/...

test-chart: testbin
	$(TESTMOD) test ./build/... ./chart/...

# The comparison suite (test/bench): every path side by side in one run,
# about 15 minutes on 2 cores. Writes the generated section of
# docs/benchmarks.md and the plots in docs/img/ from bin/bench.txt. The
# test binary is built first so no compiler runs during a measurement.
# BENCH_NOTE="..." adds a remark to the section (say if the machine was busy).
BENCH_SUITE := ^Benchmark(LadderGet|LadderThroughput|Streams|HeadOfLine|IdleAgents|ReconnectStorm)$$
bench:
	@mkdir -p bin
	$(TESTMOD) test -c -o $(CURDIR)/bin/bench.test ./bench
	cd test/bench && ../../bin/bench.test -test.run '^$$' -test.bench '$(BENCH_SUITE)' \
	  -test.benchtime 1x -test.timeout 60m > ../../bin/bench.txt 2>&1; \
	  status=$$?; cat ../../bin/bench.txt; exit $$status
	$(TESTMOD) run ./bench/report -in $(CURDIR)/bin/bench.txt -md $(CURDIR)/docs/benchmarks.md -img $(CURDIR)/docs/img -note "$(BENCH_NOTE)"

# Container images (needs a Docker engine; CI checks the same build flags).
images:
	docker build -f Dockerfile.kas --build-arg VERSION=$(VERSION) -t kubetunnel/kas:$(VERSION) .
	docker build -f Dockerfile.agentk --build-arg VERSION=$(VERSION) -t kubetunnel/agentk:$(VERSION) .

# deploy/agentk.yaml is generated from chart/agentk.
deploy-manifest:
	$(TESTMOD) test ./chart -run TestDeployManifestUpToDate -update

# The generated docs: docs/config-reference.md from the config structs and
# the import diagram of docs/architecture.md from go list.
docs:
	$(TESTMOD) test ./docs -update

# A local control plane, a git repo with an example agent config, kas and
# agentk, all on loopback; stays up until Ctrl-C.
# Built first and run directly, not with `go run`: interrupted, `go run`
# exits 1 whatever the program does, and make then says "Error 1" for a
# Ctrl-C. DEMO_FLAGS=-light uses the light control plane even where a real
# node can run.
demo: build testbin
	$(TESTMOD) build -o $(CURDIR)/bin/demo ./e2e/demo
	bin/demo $(DEMO_FLAGS)

# Both modules' go.mod and go.sum must be tidy: `go mod tidy -diff` prints
# what tidy would change and fails if anything would (run `go mod tidy`,
# in test/ for the tests' module, to fix).
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum not tidy: run 'go mod tidy'"; exit 1; }
	@$(TESTMOD) mod tidy -diff || { echo "test/go.mod/test/go.sum not tidy: run 'go mod tidy' in test/"; exit 1; }
	$(GO) vet ./...
	$(TESTMOD) vet ./...

# Run each fuzz target for a while (make fuzz FUZZTIME=1m). A new
# interesting input is minimised for at most FUZZMINIMIZE: go test's
# default (60 s) would spend a short run minimising instead of fuzzing.
FUZZTIME ?= 20s
FUZZMINIMIZE ?= 5s
fuzz:
	$(GO) test -run XXX -fuzz FuzzReadHello -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./tunnel
	$(GO) test -run XXX -fuzz FuzzHelloFromHeader -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./tunnel
	$(GO) test -run XXX -fuzz FuzzReadReply -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./tunnel
	$(GO) test -run XXX -fuzz FuzzWSConnRead -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./tunnel
	$(GO) test -run XXX -fuzz FuzzSession -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./tunnel/mux
	$(GO) test -run XXX -fuzz 'FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./agentcfg
	$(GO) test -run XXX -fuzz FuzzDecode -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/yamlconf
	$(GO) test -run XXX -fuzz FuzzParsePath -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./kasproxy
	$(GO) test -run XXX -fuzz FuzzClientAddr -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./kasproxy
	$(GO) test -run XXX -fuzz FuzzGitLabAPIPath -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./kasproxy
	$(GO) test -run XXX -fuzz FuzzVerifyToken -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./kas/replicas
	$(GO) test -run XXX -fuzz FuzzMatch -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./gitops/manifests
	$(GO) test -run XXX -fuzz FuzzUnmatched -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./gitops/manifests
	$(GO) test -run XXX -fuzz FuzzParseManifests -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./gitops/apply
	$(GO) test -run XXX -fuzz FuzzStripCallerHeaders -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/kubehttp
	$(GO) test -run XXX -fuzz FuzzTransportResponse -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/streamhttp
	$(GO) test -run XXX -fuzz FuzzFastAsNetHTTP -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/httpserve
	$(GO) test -run XXX -fuzz FuzzPlainResponse -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/streamhttp
	$(GO) test -run XXX -fuzz FuzzServerRequest -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/streamhttp
	$(GO) test -run XXX -fuzz FuzzParseAgentInfo -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/gitlab
	$(GO) test -run XXX -fuzz FuzzParseAllowedAgents -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/gitlab
	$(GO) test -run XXX -fuzz FuzzParseCredential -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/gitlabaccess
	$(GO) test -run XXX -fuzz FuzzParseAuthorization -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/gitlabaccess
	$(GO) test -run XXX -fuzz FuzzParseAgentID -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/gitlabaccess
	$(GO) test -run XXX -fuzz FuzzStripQuery -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/gitlabaccess
	$(GO) test -run XXX -fuzz FuzzParseIdentityHeader -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./internal/gitlabaccess
	$(GO) test -run XXX -fuzz FuzzReadRequest -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./tunnel/wire

clean:
	rm -rf bin

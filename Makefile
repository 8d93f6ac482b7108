GO      ?= go
PKGS    ?= ./...
# A count, not a duration: with a duration, Go 1.26's fuzzing coordinator can
# fail a target with "context deadline exceeded" as the time runs out
# (go.dev/issue/75804, fixed in Go 1.27).
FUZZTIME ?= 50000x

.PHONY: all build deploy-check test vet fuzz bench bench-quick bench-go sample clean generate check-generated

all: build

# build compiles the commands under cmd/ into static binaries in bin/,
# and the preload library for glibc and musl (preload/Makefile).
build:
	@if [ -n "$$(find cmd -name '*.go' 2>/dev/null)" ]; then \
	  echo "CGO_ENABLED=0 $(GO) build -trimpath -o bin/ ./cmd/..."; \
	  CGO_ENABLED=0 $(GO) build -trimpath -o bin/ ./cmd/...; \
	else echo "build: no commands under cmd/ yet"; fi
	$(MAKE) -C preload OUT=$(CURDIR)/bin

# deploy-check tests the Dockerfile and the Kubernetes manifests (the deploy/
# module) and checks that the binaries build made are static.
deploy-check: build
	cd deploy && $(GO) vet ./... && TOAD_BIN_DIR=$(CURDIR)/bin $(GO) test -race -shuffle=on -count=1 ./...

vet:
	$(GO) vet $(PKGS)
	cd bench && $(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'); exit 1; }

# test also runs the correlate flood test without the race detector, under
# which its 10M connections would take minutes (it skips itself there).
test: vet
	$(GO) test -race -shuffle=on -count=1 $(PKGS)
	cd bench && $(GO) test -race -shuffle=on -count=1 ./...
	$(GO) test -count=1 -run '^TestFlood$$' ./correlate

# fuzz runs every fuzz target briefly; go test takes one target at a time.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg; \
	  done; \
	done

# bench measures toad beside the tools a user would pick instead and writes
# bench/RESULTS.md and bench/scaling.svg (some ten minutes; BENCHFLAGS
# resizes it: cd bench && go run ./cmd/toadbench -h). bench/ is a module of
# its own, so that its tools (ristretto, plotting) stay out of the graph
# of programs that import toad's packages. bench-quick is the same
# harness at small sizes, a smoke run for CI that writes to bench/out/.
# bench-go runs the Go benchmarks beside the code.
BENCHFLAGS ?=
bench:
	cd bench && $(GO) run ./cmd/toadbench -label "make bench" -out . $(BENCHFLAGS)

bench-quick:
	cd bench && $(GO) run ./cmd/toadbench -label "make bench-quick" -quick -out out $(BENCHFLAGS)

bench-go:
	$(GO) test -run='^$$' -bench=. -benchmem ./...
	cd bench && $(GO) test -run='^$$' -bench=. -benchmem ./...

# sample regenerates testdata/sample.pcapng and the replay outputs compared
# with it and with the generated multi-hour captures.
sample:
	$(GO) test ./internal/craft/gen -run TestSampleUpToDate -update
	$(GO) test ./cmd/toad -run TestReplayGolden -update
	$(GO) test ./replay -update

# generate rebuilds the committed protobuf code with protoc and the plugins
# pinned as tools in go.mod.
PROTOC  ?= protoc
PROTOS  := $(wildcard proto/toad/v1/*.proto)
GENTOOLS = bin/tools
GENOUT  ?= proto

generate:
	$(GO) build -o $(GENTOOLS)/ google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc
	$(PROTOC) -I proto \
	  --plugin=protoc-gen-go=$(GENTOOLS)/protoc-gen-go --go_out=$(GENOUT) --go_opt=paths=source_relative \
	  --plugin=protoc-gen-go-grpc=$(GENTOOLS)/protoc-gen-go-grpc --go-grpc_out=$(GENOUT) --go-grpc_opt=paths=source_relative \
	  $(PROTOS)

# check-generated fails when the committed generated code is stale. The
# protoc version recorded in the header comment is ignored.
check-generated:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(MAKE) --no-print-directory generate GENOUT=$$tmp; \
	diff -r -I '^// .*protoc  *v[0-9]' -x '*.proto' -x buf.yaml $$tmp proto >/dev/null 2>&1 || { \
	  echo "generated code is stale: run make generate"; diff -r -I '^// .*protoc  *v[0-9]' -x '*.proto' -x buf.yaml $$tmp proto | head -40; exit 1; }

clean:
	rm -rf bin

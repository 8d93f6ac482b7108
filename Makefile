GO      ?= go
PKGS    ?= ./...
FUZZTIME ?= 10s

.PHONY: all build test vet fuzz bench sample clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ ./cmd/...

vet:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'); exit 1; }

test: vet
	$(GO) test -race -shuffle=on -count=1 $(PKGS)

# fuzz runs every fuzz target briefly; go test takes one target at a time.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg; \
	  done; \
	done

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

clean:
	rm -rf bin

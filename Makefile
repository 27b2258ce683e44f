# loopcast — build, test and benchmark targets. `make help` lists them.
GO      ?= go
BIN     ?= bin
PKGS    ?= ./...

.PHONY: help deps build deb test test-short bench bench-build fuzz-seeds demo clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

deps: ## install what the tests and the demo need (Debian, as root)
	./scripts/install-deps.sh

build: ## build bin/sender and bin/receiver
	$(GO) build -o $(BIN)/ ./cmd/...

deb: ## build dist/loopcast-receiver_*.deb and dist/loopcast-sender_*.deb (dpkg-deb)
	./scripts/make-deb.sh dist

test: ## install prerequisites, vet, run every test (as root: the README's test command)
	./scripts/test.sh $(PKGS)

test-short: ## unit tests only, no root needed
	$(GO) test -short -count=1 $(PKGS)

bench: ## Go micro-benchmarks
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

bench-build: deps build ## loopcast build vs mke2fs -d on the full synthetic tree
	./scripts/bench-build.sh

demo: deps build ## build, sign and inspect an image of a synthetic tree
	./scripts/demo.sh

clean:
	rm -rf $(BIN)

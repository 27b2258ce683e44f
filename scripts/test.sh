#!/usr/bin/env bash
# test.sh — the project's test command (README, .ci/run): installs what the
# tests need (Debian, as root), then vets and runs every test. Tests that
# need root, loop devices or network namespaces skip outside CI with the
# reason; under CI=true a missing prerequisite fails them.
#
#   sudo ./scripts/test.sh            every package
#   sudo ./scripts/test.sh ./image/   some packages
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="/usr/local/go/bin:$PATH"
pkgs=("${@:-./...}")
go vet "${pkgs[@]}"
go build -o bin/ ./cmd/...
go test -count=1 -timeout 25m "${pkgs[@]}"

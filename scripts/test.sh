#!/usr/bin/env bash
# The whole test suite, as root: unit tests, system tests (real containers, a
# real docker-registry in per-test network namespaces), then the static
# release build and its checks.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "$0: the system tests run containers and network namespaces: run as root" >&2; exit 1; }
cargo test --workspace --locked
scripts/build-static.sh

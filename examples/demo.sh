#!/usr/bin/env bash
# The five-minute tour, on a fresh machine with no registry and no network:
# builds outpost, builds a busybox air-gap image, starts the agent (which
# imports it), runs containers, then stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "$0: outpost manages namespaces and cgroups: run as root" >&2; exit 1; }
need=()
for pkg in busybox-static umoci skopeo libseccomp-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release -p outpost
outpost=$PWD/target/release/outpost

demo=$(mktemp -d /tmp/outpost-demo.XXXX)
export OUTPOST_STATE_DIR=$demo/state OUTPOST_RUN_DIR=$demo/run OUTPOST_REGISTRIES=$demo/registries.yaml
mkdir -p "$OUTPOST_STATE_DIR/airgap"
examples/busybox-image.sh "$OUTPOST_STATE_DIR/airgap/busybox.tar"

"$outpost" agent & agent=$!
cleanup() {
  kill "$agent" 2>/dev/null || true; wait "$agent" 2>/dev/null || true
  "$outpost" ctr rm --force --all >/dev/null 2>&1 || true
  sleep 4  # the supervisor exits by itself once idle
  rm -rf "$demo"
}
trap cleanup EXIT
for _ in $(seq 50); do "$outpost" images ls -q 2>/dev/null | grep -q busybox && break; sleep 0.2; done

set -x
"$outpost" images ls
"$outpost" ctr run --name hello busybox -- sh -c 'echo "hello from $(hostname), uid $(id -u)"; exit 3' || echo "exit code: $?"
"$outpost" ctr run -d --name web --memory 32Mi busybox -- httpd -f -p 8080
"$outpost" ctr exec web -- sh -c 'wget -qO- http://127.0.0.1:8080/ >/dev/null 2>&1; echo exec sees $(ps | wc -l) processes'
"$outpost" ctr ps -a
"$outpost" ctr stop -t 2 web
"$outpost" ctr logs hello

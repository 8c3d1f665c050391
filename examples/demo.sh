#!/usr/bin/env bash
# The five-minute tour on a fresh machine, with no registry and no network:
# builds outpost, builds a busybox air-gap image, runs the agent on the bundled
# manifests (examples/manifests), shows the pod, then stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "$0: outpost manages namespaces and cgroups: run as root" >&2; exit 1; }
need=()
for pkg in busybox-static umoci skopeo libseccomp-dev iproute2; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release -p outpost
outpost=$PWD/target/release/outpost

demo=$(mktemp -d /tmp/outpost-demo.XXXX)
export OUTPOST_STATE_DIR=$demo/state OUTPOST_RUN_DIR=$demo/run OUTPOST_REGISTRIES=$demo/registries.yaml
mkdir -p "$OUTPOST_STATE_DIR/airgap" "$demo/manifests"
examples/busybox-image.sh "$OUTPOST_STATE_DIR/airgap/busybox.tar"
cp examples/manifests/*.yaml "$demo/manifests/"

"$outpost" agent --source "file://$demo/manifests" 2>"$demo/agent.log" & agent=$!
cleanup() {
  kill "$agent" 2>/dev/null || true; wait "$agent" 2>/dev/null || true
  "$outpost" killall >/dev/null 2>&1 || true
  sleep 4  # the supervisor exits by itself once idle
  rm -rf "$demo"
}
trap cleanup EXIT
for _ in $(seq 150); do
  "$outpost" get pod web -o json 2>/dev/null | grep -q '"phase": "Running"' && break
  sleep 0.2
done

set -x
"$outpost" get pods -o wide
"$outpost" logs web
"$outpost" describe pod web | head -40
"$outpost" get events --sort-by=.lastTimestamp
"$outpost" images ls

#!/usr/bin/env bash
# Builds the release `outpost` as one fully static binary (glibc static, with
# libseccomp linked in statically so seccomp support is kept), and checks it:
# `file` must say statically linked, and it must run in an empty root with no
# shared libraries at all. Prints the binary's path and size.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
[ -f /usr/lib/x86_64-linux-gnu/libseccomp.a ] || { echo "$0: libseccomp.a missing (apt-get install libseccomp-dev)" >&2; exit 1; }
# --target keeps +crt-static off build scripts and proc macros (they must stay dynamic).
RUSTFLAGS="-C target-feature=+crt-static" \
LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu \
  cargo build --release --locked --target "$target" -p outpost
bin="target/$target/release/outpost"
desc=$(file -b "$bin")
case "$desc" in
  *"statically linked"*|*"static-pie linked"*) ;;
  *) echo "$0: $bin is not static: $desc" >&2; exit 1 ;;
esac
# Run it where no library exists: an empty directory as root.
empty=$(mktemp -d); trap 'rm -rf "$empty"' EXIT
cp "$bin" "$empty/outpost"
chroot "$empty" /outpost version
echo "$bin: $(stat -c %s "$bin") bytes ($(numfmt --to=iec-i --suffix=B "$(stat -c %s "$bin")")), $desc"

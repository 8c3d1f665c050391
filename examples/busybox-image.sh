#!/usr/bin/env bash
# Builds a busybox image from Debian's busybox-static as an OCI archive, with no
# registry and no network: umoci assembles the image, skopeo writes the archive.
# Usage: examples/busybox-image.sh OUT.tar [NAME]   (NAME default docker.io/library/busybox:latest)
set -euo pipefail
out=${1:?usage: $0 OUT.tar [NAME]}
name=${2:-docker.io/library/busybox:latest}
for tool in umoci skopeo; do
  command -v "$tool" >/dev/null || { echo "$0: $tool is missing (apt-get install umoci skopeo busybox-static)" >&2; exit 1; }
done
[ -x /bin/busybox ] && file -L /bin/busybox | grep -q 'statically linked' || {
  echo "$0: /bin/busybox is not the static one (apt-get install busybox-static)" >&2; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
umoci init --layout "$work/layout" >/dev/null
umoci new --image "$work/layout:latest" >/dev/null
umoci unpack --rootless --image "$work/layout:latest" "$work/bundle" >/dev/null
root="$work/bundle/rootfs"
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/var/www"
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
umoci repack --image "$work/layout:latest" "$work/bundle" >/dev/null
umoci config --image "$work/layout:latest" --config.cmd sh --config.env PATH=/bin >/dev/null
rm -f "$out"
skopeo copy --quiet "oci:$work/layout:latest" "oci-archive:$out:$name"
echo "$out: $name"

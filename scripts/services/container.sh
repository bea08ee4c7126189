#!/bin/bash
# Build and run OCI images here, without Docker and without pulling from any image registry.
#   container.sh base [TAG]        make the base image TAG (default localhost/debian:bookworm-slim) from
#                                  Debian's packages with debootstrap, once (cached as an image)
#   container.sh podman ARGS...    podman with the settings this machine needs (runc, cgroupfs, no default
#                                  ulimits): e.g. `container.sh podman build -t scimd:test .`,
#                                  `container.sh podman run -d --network host -e LISTEN=127.0.0.1:18850 scimd:test`
# Install first: `apt-get install -y podman runc debootstrap` (≈1 min). The base takes ≈10 min the first time
# (≈200 MB), then seconds. A Dockerfile for users says `FROM debian:bookworm-slim`; build it here with
# `--build-arg` or `--from localhost/debian:bookworm-slim`, or tag the local base with the public name.
# Why the settings: crun cannot set rlimits or use the hybrid cgroup mount in this sandbox; runc with
# cgroupfs and no default ulimits can. Use --network host (no CNI networking here) and 127.0.0.1 addresses.
#
# Kept in this repository (a clone must be self-sufficient); used by scripts/container-test.
set -euo pipefail
CONF=${CONTAINERS_CONF:-${TMPDIR:-/tmp}/podman-here.conf}
[ -f "$CONF" ] || printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\n' > "$CONF"
pod() { CONTAINERS_CONF=$CONF podman --runtime runc "$@"; }
case "${1:-}" in
  base)
    TAG=${2:-localhost/debian:bookworm-slim}
    if pod image exists "$TAG"; then echo "$TAG exists"; exit 0; fi
    MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$MIRROR" ] || MIRROR=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list)
    R=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$R/rootfs" "$MIRROR" > "$R/debootstrap.log" 2>&1 || { tail -5 "$R/debootstrap.log"; exit 1; }
    rm -rf "$R/rootfs/var/cache/apt/archives/"*.deb "$R/rootfs/var/lib/apt/lists/"*
    tar -C "$R/rootfs" -c . | pod import - "$TAG" >/dev/null
    rm -rf "$R"; echo "$TAG built" ;;
  podman) shift; pod "$@" ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac

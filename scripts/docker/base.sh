#!/usr/bin/env bash
# Builds the base image every aiaa image is built FROM when no container registry is
# reachable: Debian bookworm from Debian packages (debootstrap --variant=minbase, plus
# ca-certificates for HTTPS object stores), stripped of apt lists, docs and locales, and
# imported as one layer. Users with a registry skip this and build with the Dockerfile's
# default BASE (debian:bookworm-slim).
#
#   scripts/docker/base.sh              # builds aiaa-base:bookworm unless it exists; prints the tag
#   AIAA_BASE_REBUILD=1 scripts/docker/base.sh
#
# The Debian mirror is the one this machine's apt uses (sources.list or debian.sources), or
# $AIAA_DEBIAN_MIRROR, or debootstrap's default. Needs root, debootstrap and a Docker engine.
set -euo pipefail
tag=${AIAA_BASE_IMAGE:-aiaa-base:bookworm}
if [ -z "${AIAA_BASE_REBUILD:-}" ] && docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "base.sh: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }

mirror=${AIAA_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # The first plain Debian archive URI apt is configured with (not the security archive).
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
    | grep -v '^[[:space:]]*#' | grep -oE '(https?|file)://[^ ]+' | grep -v -- '-security' | grep -E '/debian/?$' | head -n1 || true)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/aiaa-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
start=$(date +%s)
# shellcheck disable=SC2086 # $mirror is empty or one URL
debootstrap --variant=minbase --include=ca-certificates bookworm "$root" $mirror >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  echo "base.sh: debootstrap failed (log above)" >&2
  exit 1
}
# What a container never needs: package lists and caches (apt-get update fetches them again),
# documentation, man pages, locales other than C.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
  "$root"/usr/share/locale/* "$root"/var/log/* "$root"/tmp/* "$root"/root/.cache
# Keep them out on later installs too, as the official slim images do.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-minimal" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CFG
# apt inside a build: no recommends, no suggestions (smaller images).
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$root/etc/apt/apt.conf.d/90aiaa-minimal"
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["bash"]' \
  --message "debootstrap --variant=minbase bookworm" - "$tag" >/dev/null
echo "base.sh: built $tag in $(( $(date +%s) - start )) s, $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')" >&2
echo "$tag"

#!/usr/bin/env bash
# A Python 3.11 base image made from Debian bookworm packages, for machines that cannot pull
# from Docker Hub: mmdebstrap writes a root filesystem tarball (cached), `docker import` turns
# it into an image. python3-venv brings pip as a wheel for each virtualenv (the bento's
# Dockerfile makes one), so Debian's own python3-pip, and the compilers it recommends, stay out;
# usrmerge, which mmdebstrap uses to lay out the merged /usr, is then swapped for
# usr-is-merged and purged with the full perl it needs (46 MB; perl-base stays).
#
#   deploy/docker/build-base-image.sh [TAG]          (default fraud-python:3.11-bookworm)
#
# BASE_IMAGE_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt (opt-in) copies that CA bundle into
# the image and points pip at it, for networks that intercept TLS to the package index. Such
# an image carries your network's CA: keep it local, never push it. No certificate is ever
# written into the repository: the bundle is read from the build machine.
set -euo pipefail
tag="${1:-fraud-python:3.11-bookworm}"
cache="${BASE_IMAGE_CACHE:-.cache/base-image}"
suite="${BASE_IMAGE_SUITE:-bookworm}"
rootfs="$cache/$suite-python3-rootfs.tar"
mkdir -p "$cache"

if [ ! -s "$rootfs" ]; then
  echo "mmdebstrap: $suite minbase + python3 -> $rootfs"
  mmdebstrap --variant=minbase --quiet \
    --include=python3,python3-venv,ca-certificates,passwd,usr-is-merged \
    --aptopt='APT::Install-Recommends "false"' --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='chroot "$1" dpkg --purge usrmerge libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl perl libperl5.36 perl-modules-5.36' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    "$suite" "$cache/partial.tar"  # the .tar suffix picks mmdebstrap's tarball output
  mv "$cache/partial.tar" "$rootfs"
fi

changes=(
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  --change 'ENV LANG=C.UTF-8'
  --change 'CMD ["python3"]'
)
if [ -z "${BASE_IMAGE_CA_BUNDLE:-}" ]; then
  docker import "${changes[@]}" "$rootfs" "$tag"
else
  # A second layer on top of the imported one: the bundle, and pip/uv/requests told to use it.
  plain="$tag-no-ca"
  docker import "${changes[@]}" "$rootfs" "$plain"
  context="$(mktemp -d)"
  trap 'rm -rf "$context"' EXIT
  cp "$BASE_IMAGE_CA_BUNDLE" "$context/ca-bundle.crt"
  cat > "$context/Dockerfile" <<DOCKERFILE
FROM $plain
COPY ca-bundle.crt /etc/ssl/certs/ca-certificates.crt
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \\
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \\
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \\
    UV_NATIVE_TLS=1
DOCKERFILE
  DOCKER_BUILDKIT=0 docker build --quiet -t "$tag" "$context" > /dev/null
fi
docker image inspect "$tag" --format "{{.RepoTags}} {{.Size}} bytes"

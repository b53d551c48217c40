#!/usr/bin/env bash
# Installs and starts the system pieces the test suite uses: a Docker engine, Debian's
# Chromium (driven by Playwright), busybox-static (rootfs for the test images),
# docker-compose (validates deploy/compose.yaml).
# With "bench": also Tesseract 5 and nginx-light, the benchmarks' peers, and libtasn1-doc and
# shared-mime-info, whose typeset PDF manuals bench/rapidocr_options.py reads.
# Installs only as root on Debian; elsewhere it says what is missing and goes on.
set -euo pipefail
want=(docker.io chromium busybox-static fonts-dejavu-core docker-compose)
[ "${1:-}" = bench ] && want+=(tesseract-ocr nginx-light libtasn1-doc shared-mime-info)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "system-deps: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "system-deps: missing ${missing[*]} (install them as root: apt-get install ${missing[*]})" >&2
  fi
fi
# Start dockerd when the daemon is installed but not answering.
if command -v dockerd >/dev/null && ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "system-deps: starting dockerd"
    (dockerd >/tmp/vlmswap-dockerd.log 2>&1 &)
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { echo "system-deps: dockerd did not come up, see /tmp/vlmswap-dockerd.log" >&2; exit 1; }
  else
    echo "system-deps: the Docker engine is not running" >&2
  fi
fi

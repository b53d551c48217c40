#!/usr/bin/env bash
# Installs and starts the system pieces the test suite uses: a Docker engine, Debian's
# Chromium (driven by Playwright), busybox-static (rootfs for the test images),
# docker-compose (validates deploy/compose.yaml), and the layout corpus (bench/layout_corpus.py):
# its fonts (DejaVu, Liberation, Carlito, Caladea, FreeFont) and the typeset PDF manuals Debian
# ships (libtasn1-doc, shared-mime-info, libidn2-doc, bash-doc).
# With "bench": also Tesseract 5 and nginx-light, the benchmarks' peers.
# Installs only as root on Debian; elsewhere it says what is missing and goes on.
set -euo pipefail
want=(docker.io chromium busybox-static fonts-dejavu-core docker-compose
      fonts-liberation2 fonts-crosextra-carlito fonts-crosextra-caladea fonts-freefont-ttf
      libtasn1-doc shared-mime-info libidn2-doc bash-doc)
[ "${1:-}" = bench ] && want+=(tesseract-ocr nginx-light)
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

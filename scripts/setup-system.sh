#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, when they are missing.
# As root it runs apt-get; otherwise it names what is missing and fails (never skips silently).
set -euo pipefail

# command -> Debian package
declare -A NEED=(
  [nc]=netcat-openbsd
  [openssl]=openssl
  [gcc]=gcc
  [cpio]=cpio
  [qemu-system-x86_64]=qemu-system-x86
  [python3]=python3
)
missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
# busybox-static: the guest image needs the static binary, not just any busybox.
[ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
# libc6-dev: for gcc -static of the guest probe.
dpkg -s libc6-dev >/dev/null 2>&1 || missing+=(libc6-dev)

if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -eq 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: missing Debian packages: ${missing[*]}" >&2
  echo "setup: install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

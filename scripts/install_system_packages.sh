#!/usr/bin/env bash
# Debian packages the project needs; installs only what is missing (apt-get needs root).
set -euo pipefail
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
command -v redis-server >/dev/null || need+=(redis-server)
ldconfig -p | grep -q 'libpython3.11.so.1.0' || need+=(libpython3.11)
command -v python3.11 >/dev/null || need+=(python3.11 python3.11-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

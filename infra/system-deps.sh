#!/usr/bin/env bash
# Installs what casegate needs from the OS (Java 17+, Maven, PostgreSQL server, and Chromium for
# the browser tests) when missing.
# Idempotent: does nothing when everything is present. Needs root (or sudo) to install.
set -euo pipefail

missing=()
# With DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS set, no local Kafka or PostgreSQL is needed.
if [ -z "${DATABASE_URL:-}" ] || [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql postgresql-contrib)
fi
# The browser tests drive the OS's Chromium: Playwright's own browser download is not used.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "casegate needs: ${missing[*]}" >&2
    echo "next: install them as root, e.g. apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi
echo "installing OS packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"

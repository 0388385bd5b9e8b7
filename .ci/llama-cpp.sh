#!/usr/bin/env bash
# Install llama-cpp-python (the offline describer's runtime) into the active Python.
#
# PyPI has it as an sdist only, so it compiles (about 5 minutes on 2 idle cores). The wheel is
# built once, portable across x86-64 CPUs from 2013 on (AVX2/FMA/F16C, not -march=native: a
# native build runs only on CPUs like the builder's), and kept in
#   ${HEADMAPS_WHEEL_CACHE:-${XDG_CACHE_HOME:-~/.cache}/headmaps/wheels}
# A later run installs the cached wheel in seconds; an installed one is never rebuilt.
set -euo pipefail
VERSION="${LLAMA_CPP_VERSION:-0.3.36}"
PYTHON="${PYTHON:-python}"
CACHE="${HEADMAPS_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/headmaps/wheels}"

if "$PYTHON" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$VERSION')" 2>/dev/null; then
    echo "llama-cpp-python $VERSION is installed"
    exit 0
fi
mkdir -p "$CACHE"
wheel=$(ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
    echo "building llama-cpp-python $VERSION (portable x86-64-v3 build, once; about 5 minutes)..."
    arch=$(uname -m)
    args="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
    if [ "$arch" = x86_64 ]; then
        args="$args -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
    fi
    build=$(mktemp -d)
    CMAKE_ARGS="$args ${CMAKE_ARGS:-}" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
        "$PYTHON" -m pip wheel -q --no-deps -w "$build" "llama-cpp-python==$VERSION"
    mv "$build"/llama_cpp_python-*.whl "$CACHE"/
    rm -rf "$build"
    wheel=$(ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl | head -n1)
fi
"$PYTHON" -m pip install -q "$wheel"
echo "llama-cpp-python $VERSION installed from $wheel"

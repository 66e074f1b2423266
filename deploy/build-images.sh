#!/usr/bin/env bash
# Build the three images of the cloud stack without pulling anything from an image registry:
#   edgebridge            the bridge, the enricher, the sinks, `topics` and `devices` (deploy/Dockerfile)
#   edgebridge-kafka      Kafka from the Maven Central jars `edgebridge brokers` resolves (deploy/kafka/)
#   edgebridge-mosquitto  Mosquitto from Debian's package (deploy/mosquitto/)
# Python packages come from a wheelhouse made here on the host (pip wheel), the build context of the
# edgebridge image: carry build/images/ to an air-gapped site and the same build works there.
#
# Usage: deploy/build-images.sh [--base IMAGE] [--tag TAG]
#   --base  the Debian bookworm image every image starts from (default: python:3.11-slim-bookworm for
#           edgebridge, debian:bookworm-slim for Kafka and Mosquitto); give a local one where no registry
#           is reachable, e.g. one made with debootstrap (docs/deploy.md shows how)
#   --tag   image tag (default latest)
# PYTHON picks the interpreter that makes the wheels (default .venv/bin/python, else python3): it must be
# the image's Python minor version (3.11) since some dependencies ship compiled wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
base="" tag=latest
while [ $# -gt 0 ]; do
    case "$1" in
        --base) base=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "build-images: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
python=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
out=build/images
rm -rf "$out" && mkdir -p "$out/wheelhouse" "$out/kafka"

echo "build-images: wheels of edgebridge[cloud,postgres] with $python"
"$python" -m pip wheel --quiet --wheel-dir "$out/wheelhouse" ".[cloud,postgres]"

echo "build-images: Kafka's jars"
lib=$("$python" -c 'from edgebridge.devbrokers.kafka_dist import resolve_kafka; print(resolve_kafka().classpath.removesuffix("/*"))')
cp -r "$lib" "$out/kafka/lib"
cp deploy/kafka/kafka-entrypoint.sh "$out/kafka/"

build() {  # build NAME DOCKERFILE CONTEXT [default base]
    local args=(--network host -t "$1:$tag" -f "$2")
    [ -n "$base" ] && args+=(--build-arg "BASE=$base")
    echo "build-images: $1:$tag"
    # --network host: Debian's packages are reached the way the host reaches them
    docker build --quiet "${args[@]}" "$3"
}
build edgebridge deploy/Dockerfile "$out/wheelhouse"
build edgebridge-kafka deploy/kafka/Dockerfile "$out/kafka"
build edgebridge-mosquitto deploy/mosquitto/Dockerfile deploy/mosquitto

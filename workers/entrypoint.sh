#!/bin/sh
# Entry point of the lpzero_queue image: preload jemalloc when present, then run the command.
#   docker run IMAGE lpzq worker --queues proxy --device cpu
#   docker run IMAGE worker --queues train            (shorthand for "lpzq worker ...")
set -eu

# jemalloc: measured several times faster than glibc malloc for large torch batches on CPU;
# located at run time so the same script works on amd64 and arm64 images.
if [ -z "${LD_PRELOAD:-}" ]; then
    for lib in /usr/lib/*-linux-gnu/libjemalloc.so.2; do
        if [ -e "$lib" ]; then
            export LD_PRELOAD="$lib"
            break
        fi
    done
fi

case "${1:-}" in
    worker|db|proxy|bench|search|report|config)
        exec lpzq "$@"
        ;;
    *)
        exec "$@"
        ;;
esac

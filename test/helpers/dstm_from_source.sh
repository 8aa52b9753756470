#!/bin/sh
# `dstm` from this tree's source, as one executable path (for `bench/alloc.ts --dstm EXE` in tests).
here=$(dirname "$0")
exec "$here/../../node_modules/.bin/bun" "$here/../../mod.ts" "$@"

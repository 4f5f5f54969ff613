#!/usr/bin/env bash
# Creates a fresh SoftHSM token directory under DIR and initialises one token in it.
#
#   softhsm/setup-token.sh DIR LABEL PIN SOPIN
#
# Writes DIR/softhsm2.conf (from softhsm2.conf.in beside this script) pointing at DIR/tokens, initialises a
# token labelled LABEL with user PIN PIN and security-officer PIN SOPIN on the free slot, and prints the
# variable to export. It never uses the system token directory. DIR must not already hold a token directory.
set -euo pipefail

if [ "$#" -ne 4 ]; then
    echo "usage: $0 DIR LABEL PIN SOPIN" >&2
    exit 2
fi
dir=$1 label=$2 pin=$3 sopin=$4
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if ! command -v softhsm2-util >/dev/null 2>&1; then
    echo "softhsm2-util not found; install SoftHSM: apt-get install softhsm2 opensc" >&2
    exit 1
fi
if [ -e "$dir/tokens" ]; then
    echo "$dir/tokens already exists; give a fresh directory" >&2
    exit 1
fi

mkdir -p "$dir/tokens"
chmod 700 "$dir" "$dir/tokens"
dir=$(cd "$dir" && pwd)
sed "s#@TOKENDIR@#$dir/tokens#" "$here/softhsm2.conf.in" >"$dir/softhsm2.conf"

export SOFTHSM2_CONF="$dir/softhsm2.conf"
softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin "$sopin" >&2

echo "export SOFTHSM2_CONF=$dir/softhsm2.conf"

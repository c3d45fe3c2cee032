#!/bin/sh
# Fetch ONNX Runtime's C/C++ API headers from Debian's libonnxruntime-dev into $1/onnxruntime.
#
# No PyPI wheel ships these headers, and Debian 12 (bookworm) has no libonnxruntime-dev, so the
# package is downloaded from Debian 13 (trixie) with apt's ordinary client under a private state
# folder: the machine's own apt configuration is neither read for sources nor changed. The
# headers are MIT (usr/share/doc/libonnxruntime-dev/copyright); API version 21 works with every
# runtime >= 1.21, which our custom-op library asks for at registration.
set -eu
dest=${1:?usage: fetch_ort_headers.sh DEST}
suite=${ST_ORT_DEBIAN_SUITE:-trixie}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/sources"
cat > "$work/sources/debian.sources" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt_opts="-o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts=$work/sources \
 -o Dir::State::Lists=$work/lists -o Dir::Cache=$work/cache -o Debug::NoLocking=1 \
 -o APT::Sandbox::User=root -qq"
# shellcheck disable=SC2086
apt-get $apt_opts update
cd "$work"
# shellcheck disable=SC2086
apt-get $apt_opts download libonnxruntime-dev
dpkg-deb -x "$work"/libonnxruntime-dev_*.deb "$work/root"
mkdir -p "$dest"
# Staged and renamed into place, so a concurrent build never sees half a folder.
stage="$dest/.onnxruntime.$$"
cp -r "$work/root/usr/include/onnxruntime" "$stage"
cp "$work/root/usr/share/doc/libonnxruntime-dev/copyright" "$stage/COPYRIGHT"
rm -rf "$dest/onnxruntime"
mv "$stage" "$dest/onnxruntime"
echo "ONNX Runtime headers ($(basename "$work"/libonnxruntime-dev_*.deb)) in $dest/onnxruntime"

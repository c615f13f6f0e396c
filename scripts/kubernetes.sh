#!/usr/bin/env bash
# Provide a real kube-apiserver and kube-controller-manager for tests/k8s. No registry reachable
# here ships them, so they are built offline from Debian's source package (Kubernetes 1.20.2,
# Go dependencies vendored; 5 to 10 minutes on 2 cores) and cached outside the repo, in
# ${NBPLANE_KUBE_CACHE:-~/.cache/nbplane-kube}/bin. Idempotent; needs root (as on CI).
set -euo pipefail

cache=${NBPLANE_KUBE_CACHE:-$HOME/.cache/nbplane-kube}
bin=$cache/bin
binaries=(kube-apiserver kube-controller-manager)
log() { echo "[kubernetes.sh] $*"; }

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# etcd comes from Debian, not from the cache: a restored cache on a fresh machine still needs it.
if ! command -v etcd >/dev/null 2>&1; then
  log "installing etcd-server"
  apt-get update -qq
  apt_install etcd-server
fi

if [[ -x $bin/kube-apiserver && -x $bin/kube-controller-manager ]]; then
  log "binaries present in $bin"
  exit 0
fi

start=$(date +%s)
if ! grep -rqs '^\(deb-src \|Types:.*deb-src\)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  log "enabling Debian source packages"
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
      >/etc/apt/sources.list.d/nbplane-deb-src.sources
  else
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list >/etc/apt/sources.list.d/nbplane-deb-src.list
  fi
fi
log "installing golang-go, etcd-server, dpkg-dev, rsync"
apt-get update -qq
apt_install golang-go etcd-server dpkg-dev rsync

build=$cache/build
rm -rf "$build"
mkdir -p "$build"
cd "$build"
log "downloading the kubernetes source package"
apt-get source --download-only -qq -o APT::Sandbox::User=root kubernetes >/dev/null
dpkg-source -x --no-check kubernetes_*.dsc src >/dev/null
cd src
mkdir -p .go/src/k8s.io
ln -sfn ../../.. .go/src/k8s.io/kubernetes
log "building ${binaries[*]} (5 to 10 minutes; output in $build/make.log)"
if ! GOPATH=$PWD/.go GOCACHE=$build/gocache CGO_ENABLED=0 GOPROXY=off GOFLAGS=-mod=vendor \
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$build/make.log" 2>&1; then
  tail -n 40 "$build/make.log"
  log "build failed; full log in $build/make.log"
  exit 1
fi
mkdir -p "$bin"
for name in "${binaries[@]}"; do  # renamed into place: never a half-copied binary
  install -m 0755 "_output/bin/$name" "$bin/.$name.tmp"
  mv "$bin/.$name.tmp" "$bin/$name"
done
cd /
rm -rf "$build"
log "built in $(($(date +%s) - start)) s; binaries in $bin"

#!/usr/bin/env bash
# Release build of dmvpn, from the repository root or anywhere in it:
#
#   packaging/build.sh          dist/dmvpn (static, -trimpath, stripped, version
#                               stamped from git describe) and dist/completions/
#   packaging/build.sh deb      the same, then dist/dmvpn_VERSION_ARCH.deb (nfpm)
#
# Environment: VERSION (default: git describe --tags --always --dirty),
# GOARCH (default: the host's), DEB_MAINTAINER (the package's Maintainer
# field). dist/ is not committed (.gitignore).
set -euo pipefail
cd "$(dirname "$0")/.."

# nfpm is run from the Go module proxy at an exact version; nothing is
# added to go.mod.
NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

what=${1:-binary}
case $what in
binary | deb) ;;
*)
	echo "usage: $0 [binary|deb]" >&2
	exit 2
	;;
esac

VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo devel)}
GOARCH=${GOARCH:-$(go env GOARCH)}
export GOARCH GOOS=linux CGO_ENABLED=0
# Reproducible: file times in the package are the last commit's.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

mkdir -p dist/completions
# -buildvcs=auto overrides a GOFLAGS=-buildvcs=false: the commit is
# recorded when this is a git checkout (dmvpn version shows it).
go build -trimpath -buildvcs=auto -ldflags "-s -w -X main.version=$VERSION" -o dist/dmvpn ./cmd/dmvpn
echo "built dist/dmvpn $VERSION linux/$GOARCH"

# Completion scripts, from a binary that runs here.
gen=dist/dmvpn
if [[ $GOARCH != "$(go env GOHOSTARCH)" ]]; then
	gen=dist/.dmvpn-host
	GOARCH=$(go env GOHOSTARCH) go build -o "$gen" ./cmd/dmvpn
fi
"$gen" completion bash >dist/completions/dmvpn.bash
"$gen" completion zsh >dist/completions/_dmvpn
"$gen" completion fish >dist/completions/dmvpn.fish
[[ $gen == dist/dmvpn ]] || rm -f "$gen"
echo "wrote dist/completions/{dmvpn.bash,_dmvpn,dmvpn.fish}"

[[ $what == deb ]] || exit 0

# A Debian version starts with a digit: v1.2.3-4-gabcdef-dirty becomes
# 1.2.3+4.gabcdef.dirty (sorts after 1.2.3); with no tag yet, the commit
# alone becomes 0.0.0~gitYYYYMMDD.abcdef (sorts before any release).
case $VERSION in
v[0-9]* | [0-9]*)
	v=${VERSION#v}
	DEB_VERSION=$(sed -e 's/-/+/' -e 's/-/./g' <<<"$v")
	;;
*)
	DEB_VERSION="0.0.0~git$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d).${VERSION//-/.}"
	;;
esac
DEB_MAINTAINER=${DEB_MAINTAINER:-dmvpn maintainers <root@localhost>}
DEB_ARCH=$GOARCH # nfpm maps Go's names to Debian's (386 → i386, ...)
export DEB_VERSION DEB_MAINTAINER DEB_ARCH
deb=dist/dmvpn_${DEB_VERSION}_${GOARCH}.deb
rm -f "$deb"
# nfpm is built for the host, whatever GOARCH the package is for.
GOARCH=$(go env GOHOSTARCH) go run "$NFPM" package --config packaging/nfpm.yaml --packager deb --target "$deb"
echo "built $deb"

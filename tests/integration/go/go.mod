module motte.test/tloginterop

go 1.19

require golang.org/x/mod v0.7.0

// Offline: Debian's golang-golang-x-mod-dev, no module proxy (see the test that builds this).
replace golang.org/x/mod => /usr/share/gocode/src/golang.org/x/mod

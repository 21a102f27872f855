package main

// The container image has no /etc/ssl (an empty base): without these
// roots a rediss:// broker's certificate could not be verified there. Go
// uses them only when the system has no roots of its own, so a host's or a
// distro image's CA bundle still wins.
import _ "golang.org/x/crypto/x509roots/fallback"

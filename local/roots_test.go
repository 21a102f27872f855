package main

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"testing"
)

// rootsChildEnv, when set, makes TestFallbackRoots verify instead of spawn:
// the system roots are loaded once per process, so the check runs in a
// child that never saw any.
const rootsChildEnv = "ORDERSTREAM_TEST_ROOTS_CHILD"

// TestFallbackRoots: on a machine with no CA bundle (the image's empty
// base) the binary still trusts the public roots, so rediss:// to a managed
// Redis verifies. The child runs with the system's bundle out of reach and
// verifies Let's Encrypt's root (ISRG Root X1) against what Go finds.
func TestFallbackRoots(t *testing.T) {
	pemBytes, err := os.ReadFile("testdata/isrg-root-x1.pem")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatal("testdata/isrg-root-x1.pem holds no PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv(rootsChildEnv) == "1" {
		if _, err := cert.Verify(x509.VerifyOptions{}); err != nil {
			t.Fatalf("with no system roots, %s does not verify: %v", cert.Subject, err)
		}
		return
	}
	empty := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFallbackRoots$", "-test.count=1")
	// Where Go looks for roots on Linux: both pointed at an empty directory.
	cmd.Env = append(os.Environ(), rootsChildEnv+"=1", "SSL_CERT_FILE="+empty+"/none.pem", "SSL_CERT_DIR="+empty)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child without system roots: %v\n%s", err, out)
	}
}

package testpki

import "testing"

// MustIssue makes a CA and a certificate from it for hosts, in a
// temporary directory of t, and ends the test on an error.
func MustIssue(t testing.TB, hosts ...string) (certFile, keyFile, caFile string) {
	t.Helper()
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, caFile, err = ca.Issue(t.TempDir(), hosts...)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, caFile
}

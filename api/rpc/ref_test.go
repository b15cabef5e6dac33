package rpc

import "testing"

func TestRefRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		branch, tag, commit, encoded string
	}{
		{encoded: ""},
		{branch: "main", encoded: "branch:main"},
		{branch: "feature:x", encoded: "branch:feature:x"},
		{tag: "v1.0", encoded: "tag:v1.0"},
		{commit: "0123456789abcdef0123456789abcdef01234567", encoded: "commit:0123456789abcdef0123456789abcdef01234567"},
	} {
		if got := EncodeRef(tc.branch, tc.tag, tc.commit); got != tc.encoded {
			t.Errorf("EncodeRef(%q, %q, %q) = %q, want %q", tc.branch, tc.tag, tc.commit, got, tc.encoded)
		}
		b, tg, c, err := DecodeRef(tc.encoded)
		if err != nil || b != tc.branch || tg != tc.tag || c != tc.commit {
			t.Errorf("DecodeRef(%q) = %q, %q, %q, %v", tc.encoded, b, tg, c, err)
		}
	}
	for _, bad := range []string{"main", "branch:", "head:main", ":x"} {
		if _, _, _, err := DecodeRef(bad); err == nil {
			t.Errorf("DecodeRef(%q) succeeded", bad)
		}
	}
}

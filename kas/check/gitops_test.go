package check

import "testing"

// The directory a glob names, and the directory of a repository closest
// to it: what kas check suggests for a glob that selects nothing.
func TestGlobDirAndNearest(t *testing.T) {
	for g, want := range map[string]string{"/manifest/**/*.yaml": "/manifest", "/a/b/c.yaml": "/a/b", "/*.yaml": "", "/x.yaml": "", "/deploy/{a,b}/*": "/deploy"} {
		if got := globDir(g); got != want {
			t.Errorf("globDir(%q) = %q, want %q", g, got, want)
		}
	}
	dirs := map[string]bool{"/manifests": true, "/manifests/app": true, "/docs": true}
	for want, near := range map[string]string{"/manifest": "/manifests", "/docs": "", "/zzzzzzzzzz": "", "/manfests/app": "/manifests/app"} {
		if got := nearestDir(want, dirs); got != near {
			t.Errorf("nearestDir(%q) = %q, want %q", want, got, near)
		}
	}
}

package docs

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Text that kubectl, Go's TLS stack or slog print around our messages.
var external = []string{
	"certificate signed by unknown authority",
	"You must be logged in to the server",
	"the server has asked for the client to provide credentials",
	"Error from server",
}

var (
	troubleRow = regexp.MustCompile("(?m)^\\| `([^`]+)`")
	splitter   = regexp.MustCompile(`…|"|'|: |\d+|\b[A-Z]\b|status=|reason=|err=|\(|\)`)
)

// Every message the README's troubleshooting tables quote is one the code
// really produces (up to the values in it), so the table cannot keep a
// message the code no longer says.
func TestTroubleshootingMessagesExist(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	start := strings.Index(section, "## Troubleshooting")
	end := strings.Index(section, "## How it works")
	if start < 0 || end < start {
		t.Fatal("README has no Troubleshooting section")
	}
	section = section[start:end]

	var src strings.Builder
	err = filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "test" || strings.HasPrefix(d.Name(), ".")) && path != "../.." {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			src.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	code := src.String()
	found := func(frag string) bool {
		for _, e := range external {
			if strings.Contains(e, frag) || strings.Contains(frag, e) {
				return true
			}
		}
		// The first word may be a value the code formats (a header name).
		words := strings.Fields(frag)
		return strings.Contains(code, frag) || len(words) > 2 && strings.Contains(code, strings.Join(words[1:], " "))
	}
	rows := troubleRow.FindAllStringSubmatch(section, -1)
	if len(rows) < 15 {
		t.Fatalf("found %d troubleshooting messages, want the tables' rows", len(rows))
	}
	for _, r := range rows {
		for _, frag := range splitter.Split(r[1], -1) {
			frag = strings.TrimSpace(frag)
			if len(frag) < 12 {
				continue
			}
			if !found(frag) {
				t.Errorf("README troubleshooting quotes %q, but no code says %q", r[1], frag)
			}
		}
	}
}

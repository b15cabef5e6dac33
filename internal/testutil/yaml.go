package testutil

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

// MarshalYAML is yaml.Marshal that ends the test on an error: a config
// struct written out as the file a user would edit.
func MarshalYAML(t testing.TB, v any) []byte {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

package agentcfg

import (
	"encoding/json"
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"

	"kubetunnel/internal/yamlconf"
)

// Duration is a time.Duration written as a Go duration string ("3600s",
// "1h") in YAML and JSON, so the wire JSON reads like config.yaml.
type Duration struct {
	time.Duration
}

// UnmarshalYAML accepts only duration strings: a bare number is an error
// rather than nanoseconds, which nobody means.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDurationNode(n)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes the duration string.
func (d Duration) MarshalYAML() (any, error) {
	return d.String(), nil
}

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.String())
}

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"3600s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	d.Duration = v
	return nil
}

// parseDurationNode is shared by UnmarshalYAML and the shape check, so both
// give the same advice.
func parseDurationNode(n *yaml.Node) (time.Duration, error) {
	if n.Kind != yaml.ScalarNode {
		return 0, fmt.Errorf("must be a duration such as 3600s or 1h, got %s", yamlconf.Describe(n))
	}
	switch n.ShortTag() {
	case "!!int", "!!float":
		return 0, fmt.Errorf("%s has no unit: write %ss for seconds", n.Value, n.Value)
	case "!!str":
	default:
		return 0, fmt.Errorf("%q is not a duration: write a number with a unit such as 3600s or 1h", n.Value)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: write a number with a unit such as 3600s or 1h", n.Value)
	}
	return v, nil
}

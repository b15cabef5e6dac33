package agentcfg

import (
	"encoding/json"
	"fmt"
)

// ToJSON encodes a configuration for the wire (ConfigurationResponse.config_json).
func (c *Config) ToJSON() ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode agent configuration: %w", err)
	}
	return b, nil
}

// FromJSON decodes a configuration from the wire and validates it. Unknown
// fields are ignored and missing ones defaulted, so that kas and agentk of
// neighbouring versions understand each other; kas has already rejected
// unknown keys in config.yaml.
func FromJSON(data []byte) (*Config, error) {
	cfg := &Config{}
	if err := json.Unmarshal(data, cfg); err != nil {
		return nil, fmt.Errorf("decode agent configuration: %w", err)
	}
	// The JSON always carries manifest project ids, so no config project
	// is needed here.
	cfg.Default("")
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("agent configuration from kas: %w", err)
	}
	return cfg, nil
}

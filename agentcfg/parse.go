package agentcfg

import "kubetunnel/internal/yamlconf"

// Parse reads config.yaml strictly, fills the defaults and validates.
// configProject is the id of the repository that holds the file: manifest
// projects without an id use it. An empty file is a valid configuration.
//
// Every problem found is reported as an *Error with the line and key path,
// several joined with errors.Join. Keys of GitLab's agent that this one
// does not implement are not errors: they are listed in Config.Ignored.
func Parse(data []byte, configProject string) (*Config, error) {
	return ParseNamed(FileName, data, configProject)
}

// ParseNamed is Parse with errors that name the file as given, such as
// ".gitlab/agents/production/config.yaml", instead of FileName.
func ParseNamed(file string, data []byte, configProject string) (*Config, error) {
	cfg := &Config{}
	// Fields tagged agentcfg:"ignored" are GitLab's keys that this agent
	// does not implement: checked like the others, then listed.
	// "user:" must not silently mean "no user section" (NullSectionIsError).
	res, err := yamlconf.Decode(data, cfg, yamlconf.Options{File: file, IgnoredTag: "agentcfg", NullSectionIsError: true, MaxErrors: maxErrors})
	if err != nil {
		return nil, err
	}
	cfg.Ignored = res.Ignored
	cfg.Default(configProject)
	if err := joinErrors(cfg.validate()); err != nil {
		return nil, res.Locate(err)
	}
	return cfg, nil
}

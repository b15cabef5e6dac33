package status

import "time"

// ConfigReload is the state of the kas config file's live reloads (SIGHUP
// and the file poll), as the status page and GET /api/v1/status show it.
type ConfigReload struct {
	// File is the config file kas reads.
	File string `json:"file"`
	// LastSuccessAt is when the running config was last loaded: at start,
	// or by a reload.
	LastSuccessAt time.Time `json:"last_success_at"`
	// LastReloadAt is when the last reload was tried; zero if none has
	// been since kas started.
	LastReloadAt time.Time `json:"last_reload_at,omitzero"`
	// Result is "success" or "failure" for the last reload; empty if none
	// has been tried.
	Result string `json:"result,omitempty"`
	// Key is the config key a failed reload found wrong (a YAML path such
	// as users[2].token_sha256[0]); empty for a failure of the whole file
	// (unreadable, empty, not YAML).
	Key string `json:"key,omitempty"`
	// Error says why the last reload failed. kas keeps running the config
	// loaded at LastSuccessAt.
	Error string `json:"error,omitempty"`
}

package gitlabaccess

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// MaxIdentityHeaderLen bounds an encoded Identity. A ci_job identity of a
// project in a deep group tree is well under 4 KiB; the bound keeps a
// broken or hostile peer from making agentk decode megabytes per request.
const MaxIdentityHeaderLen = 32 << 10

// identityJSON is the wire form: short keys, extra as an ordered list.
type identityJSON struct {
	User   string      `json:"u"`
	UID    string      `json:"i,omitempty"`
	Groups []string    `json:"g,omitempty"`
	Extra  []extraJSON `json:"x,omitempty"`
}

type extraJSON struct {
	Key    string   `json:"k"`
	Values []string `json:"v"`
}

// HeaderValue encodes id for one header from kas to agentk: base64url
// (unpadded) JSON, so any string GitLab sends survives as a header value.
func (id *Identity) HeaderValue() string {
	w := identityJSON{User: id.User, UID: id.UID, Groups: id.Groups}
	for _, e := range id.Extra {
		w.Extra = append(w.Extra, extraJSON{Key: e.Key, Values: e.Values})
	}
	b, _ := json.Marshal(w) // strings and slices only: cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

// ParseIdentityHeader decodes HeaderValue's output and checks it with
// Validate. agentk calls it on what kas sent.
func ParseIdentityHeader(v string) (*Identity, error) {
	if len(v) > MaxIdentityHeaderLen {
		return nil, fmt.Errorf("identity header: %d bytes, over %d", len(v), MaxIdentityHeaderLen)
	}
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("identity header: %w", err)
	}
	var w identityJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("identity header: %w", err)
	}
	id := &Identity{User: w.User, UID: w.UID, Groups: w.Groups}
	for _, e := range w.Extra {
		id.Extra = append(id.Extra, Extra{Key: e.Key, Values: e.Values})
	}
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("identity header: %w", err)
	}
	return id, nil
}

// Validate checks that id can be sent as impersonation headers: a user,
// no empty group or extra key, no repeated extra key, and no control
// character anywhere (Go refuses to send such a header value, and the
// request would fail at agentk instead of being refused with a reason).
func (id *Identity) Validate() error {
	if id.User == "" {
		return errors.New("no user")
	}
	check := func(what, s string) error {
		for i := 0; i < len(s); i++ {
			if s[i] < ' ' || s[i] == 0x7f {
				return fmt.Errorf("%s %q has a control character", what, truncate(s))
			}
		}
		return nil
	}
	if err := check("user", id.User); err != nil {
		return err
	}
	if err := check("uid", id.UID); err != nil {
		return err
	}
	for _, g := range id.Groups {
		if g == "" {
			return errors.New("empty group")
		}
		if err := check("group", g); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for _, e := range id.Extra {
		if e.Key == "" {
			return errors.New("empty extra key")
		}
		if seen[e.Key] {
			return fmt.Errorf("extra key %q repeated", truncate(e.Key))
		}
		seen[e.Key] = true
		if err := check("extra key", e.Key); err != nil {
			return err
		}
		for _, v := range e.Values {
			if err := check("extra value", v); err != nil {
				return err
			}
		}
	}
	return nil
}

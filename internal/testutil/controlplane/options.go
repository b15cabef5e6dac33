package controlplane

// Options configures Start.
type Options struct {
	// BinDir holds the etcd and kube-apiserver binaries. Default: <repo root>/bin.
	// Missing binaries are built there.
	BinDir string
	// Dir receives etcd data, certificates, secrets, logs and kubeconfigs.
	// Default: a fresh temporary directory, removed by Stop. A Dir given
	// here is kept so it can be inspected after a failure.
	Dir string
	// Logf receives progress messages. Default: discard.
	Logf func(format string, args ...any)
	// Users are extra static-token users, in addition to the admin.
	Users []User
	// LocalOnly makes StartOrExisting start a local control plane even when
	// KUBECONFIG is set. For tests that need the API server to dial this
	// machine's loopback, like those using the stand-in kubelet.
	LocalOnly bool
	// Address is where kube-apiserver listens and what it advertises.
	// Default: 127.0.0.1. A real kubelet needs an address that is not
	// loopback (package realnode uses a network namespace's).
	Address string
	// APIServerArgs are extra kube-apiserver flags; a flag given here
	// overrides the default of the same name.
	APIServerArgs []string
}

// User is a static-token user known to kube-apiserver via --token-auth-file.
type User struct {
	Name   string
	Token  string
	Groups []string
}

func (o *Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

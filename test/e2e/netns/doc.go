// Package netns gives an e2e test an address that is not loopback: a
// network namespace joined to this one by a veth pair, and listeners
// inside it. The API server refuses loopback and link-local endpoint IPs,
// so its service proxy can only be tested against such an address.
//
// It needs root (creating a namespace takes CAP_SYS_ADMIN and
// CAP_NET_ADMIN) and the ip command from iproute2. CI runs as root.
package netns

//go:build !linux

package netns

import (
	"context"
	"net"
)

// Create needs Linux.
func Create(ctx context.Context) (*Namespace, error) { return nil, ErrUnsupported }

// Listen needs Linux.
func (n *Namespace) Listen(port string) (net.Listener, error) { return nil, ErrUnsupported }

// Close needs Linux.
func (n *Namespace) Close() error { return ErrUnsupported }

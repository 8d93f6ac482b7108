//go:build !linux

package inject

import (
	"errors"
	"net"
)

// Sender writes packets to an interface; there is none off Linux.
type Sender struct{}

// New fails off Linux.
func New(string, net.HardwareAddr) (*Sender, error) {
	return nil, errors.ErrUnsupported
}

func (s *Sender) Send([]byte) error               { return errors.ErrUnsupported }
func (s *Sender) SendAll([][]byte, float64) error { return errors.ErrUnsupported }
func (s *Sender) Close() error                    { return nil }

// OnOneCPU runs fn.
func OnOneCPU(fn func() error) error { return fn() }

// Burst is not supported here.
func Burst(string, net.HardwareAddr, [][]byte, float64) error { return errors.ErrUnsupported }

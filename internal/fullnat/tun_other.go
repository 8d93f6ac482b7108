//go:build !linux

package fullnat

import "errors"

// New returns an error: the forwarder needs a Linux TUN device.
func New(cfg Config) (*Forwarder, error) {
	if _, err := cfg.normalize(); err != nil {
		return nil, err
	}
	return nil, errors.New("fullnat: needs Linux (a TUN device)")
}

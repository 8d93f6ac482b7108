//go:build !linux

package capture

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

type reader struct {
	filter         Filter
	ignoreOutgoing bool
	counters       counters
}

func (c *Capture) open() error {
	return fmt.Errorf("live capture needs Linux (AF_PACKET), not %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func (c *Capture) sync(context.Context) error { return errors.ErrUnsupported }
func (c *Capture) stop()                      {}
func (r *reader) run(*Capture) error          { return nil }
func (r *reader) kernelStats(*Stats)          {}
func (r *reader) close()                      {}

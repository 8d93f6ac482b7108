//go:build !linux

package packet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/net/bpf"
)

// Conn is a packet socket; there is none off Linux.
type Conn struct{}

// Open fails off Linux with an error wrapping errors.ErrUnsupported.
func Open(Config) (*Conn, error) {
	return nil, opError(opOpen, nil, fmt.Errorf("packet sockets need Linux, not %s: %w", runtime.GOOS, errors.ErrUnsupported))
}

func (c *Conn) SetBPF([]bpf.RawInstruction) error             { return errors.ErrUnsupported }
func (c *Conn) SetIgnoreOutgoing() error                      { return errors.ErrUnsupported }
func (c *Conn) Bind(*net.Interface) error                     { return errors.ErrUnsupported }
func (c *Conn) JoinFanout(uint16) error                       { return errors.ErrUnsupported }
func (c *Conn) SyscallConn() (syscall.RawConn, error)         { return nil, errors.ErrUnsupported }
func (c *Conn) LocalAddr() net.Addr                           { return nil }
func (c *Conn) Stats() (Stats, error)                         { return Stats{}, errors.ErrUnsupported }
func (c *Conn) Mark() (Mark, error)                           { return 0, errors.ErrUnsupported }
func (c *Conn) Wait(context.Context, Mark) error              { return errors.ErrUnsupported }
func (c *Conn) Sync(context.Context) error                    { return errors.ErrUnsupported }
func (c *Conn) Receive(func(data []byte, ts time.Time)) error { return errors.ErrUnsupported }
func (c *Conn) Close() error                                  { return nil }

package packet

import (
	"fmt"
	"net"
)

// Defaults of a zero Config.
const (
	DefaultRingSize  = 4 << 20
	DefaultBlockSize = 64 << 10
	DefaultSnapLen   = 512
)

// Config sizes a socket's receive ring. The zero value is a 4 MiB ring of
// 64 KiB blocks keeping 512 bytes of each packet.
type Config struct {
	// RingSize is the ring's size in bytes, rounded down to whole blocks;
	// 0 means DefaultRingSize.
	RingSize int
	// BlockSize is the unit in which the kernel allocates the ring, a
	// multiple of the page size holding whole frames; 0 means
	// DefaultBlockSize.
	BlockSize int
	// SnapLen is the most bytes of a packet a frame holds: the frame size
	// follows from it. 0 means DefaultSnapLen. A filter's return value
	// trims packets further.
	SnapLen int
}

func (c Config) withDefaults() (Config, error) {
	if c.RingSize == 0 {
		c.RingSize = DefaultRingSize
	}
	if c.BlockSize == 0 {
		c.BlockSize = DefaultBlockSize
	}
	if c.SnapLen == 0 {
		c.SnapLen = DefaultSnapLen
	}
	switch {
	case c.BlockSize < 4096 || c.BlockSize%4096 != 0:
		return c, fmt.Errorf("packet config: BlockSize %d: want a multiple of 4096", c.BlockSize)
	case c.RingSize < c.BlockSize:
		return c, fmt.Errorf("packet config: RingSize %d is smaller than BlockSize %d", c.RingSize, c.BlockSize)
	case c.SnapLen < 1 || c.SnapLen > 65535:
		return c, fmt.Errorf("packet config: SnapLen %d: want 1-65535", c.SnapLen)
	case frameSize(c.SnapLen) > c.BlockSize:
		return c, fmt.Errorf("packet config: a frame of SnapLen %d does not fit a block of %d bytes", c.SnapLen, c.BlockSize)
	}
	return c, nil
}

// Frame geometry of a cooked TPACKET_V2 socket: the kernel writes the
// packet at netOffset (the header aligned to 16 bytes, then 16 bytes the
// kernel reserves for a link header), and a frame is a multiple of 16.
const (
	tpacketAlign = 16
	tpacket2Hdr  = 32 // TPACKET_ALIGN(sizeof(struct tpacket2_hdr))
	sockaddrLL   = 20 // sizeof(struct sockaddr_ll)
	netOffset    = (tpacket2Hdr+sockaddrLL+tpacketAlign-1)&^(tpacketAlign-1) + 16
)

// frameSize is the size of a frame that holds snap bytes of a packet.
func frameSize(snap int) int {
	return (netOffset + snap + tpacketAlign - 1) &^ (tpacketAlign - 1)
}

// Stats are a socket's kernel counters since it was opened.
type Stats struct {
	// Packets is how many packets the filter passed to the socket,
	// dropped ones included.
	Packets uint64
	// Drops is how many of them the kernel dropped because the ring was
	// full.
	Drops uint64
	// Received is how many Receive handed over.
	Received uint64
	// Wakeups is how many times Receive woke to look at the ring: at low
	// rates one per packet, fewer as packets come faster than it reads.
	Wakeups uint64
}

// Mark is a point in a socket's stream of packets: how many the kernel had
// put in its ring (see Conn.Mark).
type Mark uint64

// Addr is the interface a socket is bound to.
type Addr struct {
	// Interface is its name; "" means every interface.
	Interface string
}

// Network returns "packet".
func (a *Addr) Network() string { return network }

func (a *Addr) String() string {
	if a == nil || a.Interface == "" {
		return "any"
	}
	return a.Interface
}

const network = "packet"

// Operations named in errors.
const (
	opOpen       = "open"
	opBind       = "bind"
	opSetsockopt = "setsockopt"
	opGetsockopt = "getsockopt"
	opRead       = "read"
	opClose      = "close"
	opRaw        = "raw-control"
)

// opError wraps err in a *net.OpError; nil stays nil.
func opError(op string, addr *Addr, err error) error {
	if err == nil {
		return nil
	}
	oe := &net.OpError{Op: op, Net: network, Err: err}
	if addr != nil {
		oe.Addr = addr
	}
	return oe
}

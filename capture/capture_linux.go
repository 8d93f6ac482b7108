package capture

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/net/bpf"

	"github.com/toad-project/toad/capture/packet"
	"github.com/toad-project/toad/decode"
)

var fanoutSeq atomic.Uint32

// reader is one AF_PACKET socket with its ring.
type reader struct {
	conn           *packet.Conn
	filter         Filter
	ignoreOutgoing bool
	counters       counters
}

// open creates the readers. Each socket receives nothing until its filter
// is attached and it is bound; packets reach the ring only through the
// filter.
func (c *Capture) open() error {
	cfg := c.cfg
	var ifi *net.Interface
	if cfg.Interface != "" {
		var err error
		if ifi, err = net.InterfaceByName(cfg.Interface); err != nil {
			return fmt.Errorf("capture on %q: %w", cfg.Interface, err)
		}
		if ifi.Flags&net.FlagUp == 0 {
			return fmt.Errorf("capture on %q: interface is down", cfg.Interface)
		}
	}
	group := cfg.FanoutGroup
	if group == 0 {
		group = uint16(os.Getpid()*31) + uint16(fanoutSeq.Add(1))
	}
	for i := range cfg.Readers {
		r, err := openReader(cfg, ifi)
		if err != nil {
			return err
		}
		c.readers = append(c.readers, r)
		if cfg.Readers > 1 {
			if err := r.conn.JoinFanout(group); err != nil {
				return fmt.Errorf("join fanout group %d with reader %d: %w", group, i, err)
			}
		}
	}
	r0 := c.readers[0]
	cfg.Logger.Info("capture started", "interface", ifaceName(cfg.Interface), "readers", cfg.Readers,
		"filter", r0.filter, "ignore_outgoing", r0.ignoreOutgoing, "ring_bytes", cfg.RingSize, "block_bytes", cfg.BlockSize)
	return nil
}

func ifaceName(s string) string {
	if s == "" {
		return "all"
	}
	return s
}

func openReader(cfg Config, ifi *net.Interface) (*reader, error) {
	conn, err := packet.Open(packet.Config{RingSize: cfg.RingSize, BlockSize: cfg.BlockSize, SnapLen: cfg.SnapLen})
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, permissionError(err)
		}
		return nil, fmt.Errorf("open AF_PACKET ring of %d bytes: %w", cfg.RingSize, err)
	}
	r := &reader{conn: conn}
	r.filter = attachFilter(conn.SetBPF, cfg.Filter, cfg.Dialects, uint32(cfg.SnapLen), cfg.Logger)
	r.ignoreOutgoing = conn.SetIgnoreOutgoing() == nil
	if err := conn.Bind(ifi); err != nil {
		conn.Close()
		return nil, fmt.Errorf("bind AF_PACKET socket: %w", err)
	}
	return r, nil
}

// permissionError explains what the process lacks.
func permissionError(err error) error {
	bin, _ := os.Executable()
	if bin == "" {
		bin = "BINARY"
	}
	return fmt.Errorf("live capture needs the CAP_NET_RAW capability to open an AF_PACKET socket: "+
		"run as root, grant it with `setcap cap_net_raw+ep %s`, or in Kubernetes add NET_RAW to "+
		"the container's securityContext.capabilities.add: %w", bin, err)
}

// run hands every packet of the ring to the sink until the capture closes
// (nil) or the socket fails.
func (r *reader) run(c *Capture) error {
	var rec decode.Record
	err := r.conn.Receive(func(data []byte, ts time.Time) {
		r.counters.packets.Add(1)
		c.wake()
		if why := c.dec.Decode(decode.LinkRaw, data, ts, &rec); why != decode.OK {
			r.counters.failures[why].Add(1)
			return
		}
		c.sink.Observe(&rec)
		r.counters.records.Add(1)
	})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("read AF_PACKET ring: %w", err)
}

// sync waits until every reader has handed over what its ring held when
// sync was called: the marks of all first, then the waits.
func (c *Capture) sync(ctx context.Context) error {
	var marks [maxReaders]packet.Mark
	for i, r := range c.readers {
		m, err := r.conn.Mark()
		if err != nil {
			return err
		}
		marks[i] = m
	}
	for i, r := range c.readers {
		if err := r.conn.Wait(ctx, marks[i]); err != nil {
			return err
		}
	}
	return nil
}

// drainTimeout bounds how long Close waits for the readers to hand over
// what the rings hold.
const drainTimeout = 5 * time.Second

// stop makes the sockets take no more packets, waits until the readers
// have handed over what the rings hold, and closes the sockets.
func (c *Capture) stop() {
	c.stopping.Store(true)
	rejectAll := []bpf.RawInstruction{{Op: 0x06}} // ret #0
	for _, r := range c.readers {
		r.conn.SetBPF(rejectAll)
	}
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	c.sync(ctx) // a reader that failed has nothing more to hand over
	cancel()
	for _, r := range c.readers {
		r.conn.Close()
	}
}

// kernelStats adds the socket's counters to s.
func (r *reader) kernelStats(s *Stats) {
	st, err := r.conn.Stats()
	if err != nil {
		return
	}
	s.KernelPackets += st.Packets
	s.Drops += st.Drops
}

func (r *reader) close() { r.conn.Close() }

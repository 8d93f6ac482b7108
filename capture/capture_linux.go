package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket/afpacket"
	"golang.org/x/sys/unix"

	"github.com/toad-project/toad/decode"
)

// pollTimeout bounds how long a reader waits in poll(2) before it looks at
// the stop flag again, and so how long Close takes; an idle ring's
// watermark rises that often.
const pollTimeout = 10 * time.Millisecond

// tickSlack bounds how much later than BlockTimeout the kernel hands a
// partly filled block over: it rounds the timeout up to whole ticks of
// its timer (10ms at HZ=100, the coarsest) and retires a block on the
// first tick that finds it holding packets.
const tickSlack = 10 * time.Millisecond

var fanoutSeq atomic.Uint32

// reader is one AF_PACKET socket with its ring.
type reader struct {
	tp             *afpacket.TPacket
	fd             int
	filter         Filter
	ignoreOutgoing bool
	counters       counters
	// mark is the reader's watermark, Unix nanoseconds: it has passed on
	// every packet the kernel put in its ring before then.
	mark atomic.Int64
}

// open creates the readers. Each socket is created bound to no protocol,
// so that it receives nothing until its filter is attached, then bound to
// every protocol; packets reach the ring only through the filter.
func (c *Capture) open() error {
	cfg := c.cfg
	ifindex := 0
	if cfg.Interface != "" {
		ifi, err := net.InterfaceByName(cfg.Interface)
		if err != nil {
			return fmt.Errorf("capture on %q: %w", cfg.Interface, err)
		}
		if ifi.Flags&net.FlagUp == 0 {
			return fmt.Errorf("capture on %q: interface is down", cfg.Interface)
		}
		ifindex = ifi.Index
	}
	group := cfg.FanoutGroup
	if group == 0 {
		group = uint16(os.Getpid()*31) + uint16(fanoutSeq.Add(1))
	}
	for i := range cfg.Readers {
		r, err := openReader(cfg, ifindex)
		if err != nil {
			return err
		}
		c.readers = append(c.readers, r)
		if cfg.Readers > 1 {
			if err := r.tp.SetFanout(afpacket.FanoutHash, group); err != nil {
				return fmt.Errorf("join fanout group %d with reader %d: %w", group, i, err)
			}
		}
	}
	r0 := c.readers[0]
	cfg.Logger.Info("capture started", "interface", ifaceName(cfg.Interface), "readers", cfg.Readers,
		"filter", r0.filter, "ignore_outgoing", r0.ignoreOutgoing,
		"ring_bytes", cfg.RingSize, "block_bytes", cfg.BlockSize, "block_timeout", cfg.BlockTimeout)
	return nil
}

func ifaceName(s string) string {
	if s == "" {
		return "all"
	}
	return s
}

func openReader(cfg Config, ifindex int) (*reader, error) {
	opts := []any{
		afpacket.TPacketVersion3,
		afpacket.SocketDgram,
		afpacket.OptProtocol(0),
		afpacket.OptBlockSize(cfg.BlockSize),
		afpacket.OptNumBlocks(cfg.RingSize / cfg.BlockSize),
		afpacket.OptBlockTimeout(cfg.BlockTimeout),
		afpacket.OptPollTimeout(pollTimeout),
	}
	if cfg.Interface != "" {
		opts = append(opts, afpacket.OptInterface(cfg.Interface))
	}
	tp, err := afpacket.NewTPacket(opts...)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, permissionError(err)
		}
		return nil, fmt.Errorf("open AF_PACKET ring (%d blocks of %d bytes): %w", cfg.RingSize/cfg.BlockSize, cfg.BlockSize, err)
	}
	r := &reader{tp: tp}
	fd, err := socketFD(tp)
	if err != nil {
		r.close()
		return nil, err
	}
	r.fd = fd
	r.filter = attachFilter(tp.SetBPF, cfg.Filter, cfg.Dialects, uint32(cfg.SnapLen), cfg.Logger)
	r.ignoreOutgoing = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1) == nil
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		r.close()
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

// socketFD returns the descriptor of tp's socket, which afpacket keeps
// unexported. Capture needs it to attach the filter before the socket
// receives anything and to set PACKET_IGNORE_OUTGOING; the field is read,
// never written.
func socketFD(tp *afpacket.TPacket) (int, error) {
	v := reflect.ValueOf(tp).Elem().FieldByName("fd")
	if !v.IsValid() || !v.CanInt() {
		return -1, errors.New("open AF_PACKET ring: this version of gopacket/afpacket keeps no fd field")
	}
	return int(v.Int()), nil
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// run reads the ring until the capture stops.
func (r *reader) run(c *Capture) error {
	var rec decode.Record
	// since is no later than the start of the next read. A read that
	// times out found no block handed over after polling from since until
	// since+pollTimeout at least, and the kernel hands a block over at
	// most BlockTimeout+tickSlack after a packet enters it: every packet
	// that entered the ring before since+idle is in a block already read.
	since := time.Now()
	idle := pollTimeout - (c.cfg.BlockTimeout + tickSlack)
	for !c.stop.Load() {
		data, ci, err := r.tp.ZeroCopyReadPacketData()
		if err != nil {
			if errors.Is(err, afpacket.ErrTimeout) {
				c.advance(r, since.Add(idle))
				since = time.Now()
				continue
			}
			if errors.Is(err, afpacket.ErrPoll) {
				// The socket's pending error says why: ENETDOWN when the
				// interface went down or away.
				if e, _ := unix.GetsockoptInt(r.fd, unix.SOL_SOCKET, unix.SO_ERROR); e != 0 {
					err = fmt.Errorf("%w: %w", err, unix.Errno(e))
				}
			}
			return fmt.Errorf("read AF_PACKET ring: %w", err)
		}
		r.counters.packets.Add(1)
		if why := c.dec.Decode(decode.LinkRaw, data, ci.Timestamp, &rec); why != decode.OK {
			r.counters.failures[why].Add(1)
		} else {
			c.sink.Observe(&rec)
			r.counters.records.Add(1)
		}
		// The ring is read in the order packets entered it, and a packet
		// is stamped before it enters: every packet that entered before
		// this one's time has been passed on.
		c.advance(r, ci.Timestamp)
		if ci.Timestamp.After(since) {
			since = ci.Timestamp
		}
	}
	return nil
}

// advance raises r's watermark to w and, when that raises the lowest of
// the readers', reports it to the sink.
func (c *Capture) advance(r *reader, w time.Time) {
	if c.adv == nil {
		return
	}
	ns := w.UnixNano()
	if ns <= r.mark.Load() {
		return
	}
	r.mark.Store(ns)
	low := ns
	for _, o := range c.readers {
		low = min(low, o.mark.Load())
	}
	for {
		cur := c.mark.Load()
		if low <= cur {
			return
		}
		if c.mark.CompareAndSwap(cur, low) {
			break
		}
	}
	c.adv.Advance(time.Unix(0, low))
}

// kernelStats adds the socket's counters to s.
func (r *reader) kernelStats(s *Stats) {
	_, v3, err := r.tp.SocketStats()
	if err != nil {
		return
	}
	s.KernelPackets += uint64(v3.Packets())
	s.Drops += uint64(v3.Drops())
	s.Freezes += uint64(v3.QueueFreezes())
}

func (r *reader) close() { r.tp.Close() }

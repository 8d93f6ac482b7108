package fullnat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/toad-project/toad/toa"
)

// device reads and writes whole IP packets: the TUN device, or a fake in
// tests.
type device interface {
	io.ReadWriteCloser
}

// Forwarder is a running FULLNAT proxy. Create one with New, start it with
// Run, stop it with Close.
type Forwarder struct {
	cfg  Config
	dev  device
	name string
	lip  netip.Addr // the origin-side source address

	mu  sync.Mutex // guards tab
	tab table

	conns, packets, toas, noRoom, noPort, dropped atomic.Uint64
	active                                        atomic.Int64

	life    sync.Mutex // guards closed, running
	closed  bool
	running bool
	stop    chan struct{} // closed by Close
	done    chan struct{} // closed when Run returns
	closeDv sync.Once
	devErr  error
}

func newForwarder(cfg Config, dev device, name string) *Forwarder {
	return &Forwarder{
		cfg:  cfg,
		dev:  dev,
		name: name,
		lip:  cfg.proxyAddr(),
		tab:  newTable(cfg.PortMin, cfg.PortMax),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
}

// Device returns the name of the Forwarder's TUN device.
func (f *Forwarder) Device() string { return f.name }

// Stats returns the Forwarder's counters.
func (f *Forwarder) Stats() Stats {
	return Stats{
		Conns:   f.conns.Load(),
		Active:  int(f.active.Load()),
		Packets: f.packets.Load(),
		TOAs:    f.toas.Load(),
		NoRoom:  f.noRoom.Load(),
		NoPort:  f.noPort.Load(),
		Dropped: f.dropped.Load(),
	}
}

// Run forwards packets until ctx is done or Close is called, and then
// returns nil; it returns an error when the device fails. Run may be
// called once.
func (f *Forwarder) Run(ctx context.Context) error {
	f.life.Lock()
	switch {
	case f.closed:
		f.life.Unlock()
		return fmt.Errorf("fullnat run: %w", net.ErrClosed)
	case f.running:
		f.life.Unlock()
		return errors.New("fullnat run: already running")
	}
	f.running = true
	f.life.Unlock()
	defer close(f.done)

	f.cfg.Logger.Info("fullnat proxy running", "device", f.name, "vips", f.cfg.VIPs, "origin", f.cfg.Origin,
		"proxy_addr", f.lip, "toa4", f.cfg.TOA4.Dialect, "toa6", f.cfg.TOA6.Dialect,
		"placement", f.cfg.Placement, "position", f.cfg.Position)
	stopDev := context.AfterFunc(ctx, func() { f.closeDevice() })
	defer stopDev()

	var wg sync.WaitGroup
	wg.Go(func() { f.janitor(ctx) })
	err := f.forward(ctx)
	f.closeDevice()
	wg.Wait()
	f.cfg.Logger.Info("fullnat proxy stopped", "device", f.name, "conns", f.conns.Load())
	return err
}

// Close stops Run, waits for it to return and releases the device. It may
// be called more than once.
func (f *Forwarder) Close() error {
	f.life.Lock()
	if !f.closed {
		f.closed = true
		close(f.stop)
	}
	running := f.running
	f.life.Unlock()
	err := f.closeDevice()
	if running {
		<-f.done
	}
	return err
}

func (f *Forwarder) closeDevice() error {
	f.closeDv.Do(func() {
		if err := f.dev.Close(); err != nil {
			f.devErr = fmt.Errorf("close %s: %w", f.name, err)
		}
	})
	return f.devErr
}

func (f *Forwarder) stopping() bool {
	select {
	case <-f.stop:
		return true
	default:
		return false
	}
}

// forward is the packet loop: read, rewrite, write. It returns nil once
// Close or ctx has closed the device.
func (f *Forwarder) forward(ctx context.Context) error {
	closed := func(err error) bool {
		return f.stopping() || ctx.Err() != nil || errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed)
	}
	in := make([]byte, 65536)
	out := make([]byte, 65536+128)
	for {
		n, err := f.dev.Read(in)
		if err != nil {
			if closed(err) {
				return nil
			}
			return fmt.Errorf("read %s: %w", f.name, err)
		}
		f.mu.Lock()
		pkt := f.handle(in[:n], out, time.Now())
		f.mu.Unlock()
		if pkt == nil {
			f.dropped.Add(1)
			continue
		}
		if _, err := f.dev.Write(pkt); err != nil {
			if closed(err) {
				return nil
			}
			f.dropped.Add(1)
			continue
		}
		f.packets.Add(1)
	}
}

// sweepEvery is how often the janitor looks for connections to remove.
const sweepEvery = time.Second

func (f *Forwarder) janitor(ctx context.Context) {
	t := time.NewTicker(min(sweepEvery, max(f.cfg.CloseTimeout/2, time.Millisecond)))
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-ctx.Done():
			return
		case now := <-t.C:
			f.mu.Lock()
			n := f.tab.sweep(now, f.cfg.IdleTimeout)
			f.mu.Unlock()
			f.active.Add(-int64(n))
		}
	}
}

// handle rewrites one packet read from the device into out and returns the
// packet to write, or nil to drop it.
func (f *Forwarder) handle(p, out []byte, now time.Time) []byte {
	s, ok := parse(p)
	if !ok {
		return nil
	}
	for _, v := range f.cfg.VIPs {
		if s.dst == v {
			return f.fromClient(&s, out, now)
		}
	}
	if s.src == f.cfg.Origin && s.dst.Addr() == f.lip {
		return f.fromOrigin(&s, out, now)
	}
	return nil
}

func (f *Forwarder) fromClient(s *segment, out []byte, now time.Time) []byte {
	k := connKey{client: netip.AddrPortFrom(s.src.Addr().Unmap(), s.src.Port()), vip: s.dst}
	c := f.tab.lookupClient(k)
	syn := s.flags&(flagSYN|flagACK|flagRST) == flagSYN
	if syn && (c == nil || c.closing) {
		if c != nil {
			f.tab.remove(c)
			f.active.Add(-1)
		}
		if c = f.tab.add(k, now); c == nil {
			f.noPort.Add(1)
			return nil
		}
		f.conns.Add(1)
		f.active.Add(1)
		f.setOption(c)
	}
	if c == nil {
		return nil
	}
	c.last = now

	data := s.payloadLen() > 0 || s.flags&flagFIN != 0
	want := false
	switch {
	case syn:
		want = f.cfg.Placement&SYN != 0
	case c.state == stateSynAck && s.flags&(flagACK|flagSYN|flagRST) == flagACK:
		c.state = stateEstablished
		want = f.cfg.Placement&ACK != 0 || data && f.cfg.Placement&Data != 0
	case data && c.state == stateEstablished && !c.originData:
		want = f.cfg.Placement&Data != 0
	}
	if s.flags&flagFIN != 0 {
		c.finClient = true
	}
	f.noteClose(c, s.flags, now)

	rw := rewrite{src: netip.AddrPortFrom(f.lip, c.port), dst: f.cfg.Origin, pos: f.cfg.Position, mtu: f.cfg.MTU}
	if want {
		rw.opt = c.toa()
	}
	if syn {
		// Room for the TOA, as LVS and DPVS clamp the SYN, and for a header
		// that grows toward the client.
		if f.cfg.Placement != 0 {
			rw.mssCut = optRoom(c.toa())
		}
		rw.mssCut += max(0, ipHeaderLen(s.src.Addr())-ipHeaderLen(rw.dst.Addr()))
	}
	return f.emit(s, &rw, out)
}

func (f *Forwarder) fromOrigin(s *segment, out []byte, now time.Time) []byte {
	c := f.tab.lookupPort(s.dst.Port())
	if c == nil {
		return nil
	}
	c.last = now
	rw := rewrite{src: c.key.vip, dst: c.key.client, mtu: f.cfg.MTU}
	if s.flags&(flagSYN|flagACK) == flagSYN|flagACK {
		if c.state == stateSyn {
			c.state = stateSynAck
		}
		// The client's segments must leave room for the TOA and for a
		// header that grows toward the origin.
		if f.cfg.Placement&(ACK|Data) != 0 {
			rw.mssCut = optRoom(c.toa())
		}
		rw.mssCut += max(0, ipHeaderLen(f.cfg.Origin.Addr())-ipHeaderLen(rw.dst.Addr()))
	}
	if s.payloadLen() > 0 {
		c.originData = true
	}
	if s.flags&flagFIN != 0 {
		c.finOrigin = true
	}
	f.noteClose(c, s.flags, now)
	return f.emit(s, &rw, out)
}

func (f *Forwarder) emit(s *segment, rw *rewrite, out []byte) []byte {
	pkt, res := build(out, s, rw)
	switch res {
	case inserted:
		f.toas.Add(1)
	case noRoom:
		f.noRoom.Add(1)
	}
	return pkt
}

// noteClose starts the close timeout after FINs both ways or a RST.
func (f *Forwarder) noteClose(c *conn, flags uint8, now time.Time) {
	if c.closing {
		return
	}
	if flags&flagRST != 0 || c.finClient && c.finOrigin {
		c.closing = true
		c.closeAt = now.Add(f.cfg.CloseTimeout)
	}
}

// setOption encodes the connection's TOA, if its client's family has one.
func (f *Forwarder) setOption(c *conn) {
	o := f.cfg.TOA4
	if c.key.client.Addr().Is6() {
		o = f.cfg.TOA6
	}
	if o.IsZero() {
		return
	}
	b, err := toa.Append(c.opt[:0], o.Dialect.Kind, o.layout(), c.key.client)
	if err != nil {
		return // normalize checked the layout's family
	}
	c.optLen = uint8(len(b))
}

// optRoom is the header space an option takes, padded to 4 bytes.
func optRoom(opt []byte) int { return (len(opt) + 3) &^ 3 }

func ipHeaderLen(a netip.Addr) int {
	if a.Is4() {
		return 20
	}
	return 40
}

package caprate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"

	"github.com/toad-project/toad/bench/endmark"
	"github.com/toad-project/toad/capture"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/internal/inject"
	"github.com/toad-project/toad/internal/netnstest"
	"github.com/toad-project/toad/toa"
)

var (
	macServer = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x1a}
	server    = netip.MustParseAddrPort("192.0.2.20:8080")
	// marker is the last segment of a trial: once the table's sink has
	// seen it, the capture has handed over everything sent before it.
	marker = craft.Segment{Src: netip.MustParseAddrPort("192.0.2.254:65000"), Dst: server, Flags: decode.RST, Seq: 0x70ad}
)

// Run measures the capture rate as cfg says.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg.defaults()
	res := Result{Config: cfg}
	if os.Geteuid() != 0 {
		res.Skipped = "needs root: network namespaces and packet sockets (CAP_NET_ADMIN, CAP_NET_RAW)"
		return res, nil
	}
	if _, err := exec.LookPath("ip"); err != nil {
		res.Skipped = "needs ip(8) (Debian: apt-get install iproute2)"
		return res, nil
	}
	packets := segments(cfg.Packets)
	l, err := newLink()
	if err != nil {
		return res, err
	}
	defer l.close()

	t, err := l.trial(ctx, cfg, packets, 0)
	if err != nil {
		return res, err
	}
	res.Trials = append(res.Trials, t)
	cfg.Logf("capture rate: as fast as the sender can: %.0f segments/s, %d dropped, %d of %d connections in the table",
		t.Rate(), t.Drops, t.Entries, t.Sent)
	if t.Clean() {
		res.Best = &res.Trials[0]
		return res, nil
	}
	// Search between half the unpaced rate and the unpaced rate.
	lo, hi := t.Rate()/2, t.Rate()
	for range cfg.Steps {
		mid := (lo + hi) / 2
		t, err := l.trial(ctx, cfg, packets, mid)
		if err != nil {
			return res, err
		}
		res.Trials = append(res.Trials, t)
		cfg.Logf("capture rate: paced at %.0f segments/s: %.0f reached the table, %d dropped", mid, t.Rate(), t.Drops)
		if t.Clean() {
			lo = mid
		} else {
			hi = mid
		}
	}
	for i := range res.Trials {
		if t := &res.Trials[i]; t.Clean() && (res.Best == nil || t.Rate() > res.Best.Rate()) {
			res.Best = t
		}
	}
	return res, nil
}

// segments returns n SYN segments, each from a proxy port of its own and
// carrying a 200/8 TOA, as IP packets.
func segments(n int) [][]byte {
	out := make([][]byte, n)
	proxies := []byte{100, 113} // 198.51.100.0/24, 203.0.113.0/24
	for i := range out {
		host := i / 64000
		net := proxies[host/256%2]
		var src netip.Addr
		if net == 100 {
			src = netip.AddrFrom4([4]byte{198, 51, 100, byte(host % 256)})
		} else {
			src = netip.AddrFrom4([4]byte{203, 0, 113, byte(host % 256)})
		}
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), uint16(i))
		seg := craft.Segment{
			Src: netip.AddrPortFrom(src, uint16(1024+i%64000)), Dst: server, Flags: decode.SYN, Seq: uint32(i),
			Options: craft.Opts(craft.TOA(toa.Kind200V4, client), craft.MSS(1460)),
		}
		out[i] = seg.IP()
	}
	return out
}

// link is the server's and the proxies' namespaces and the veth between.
type link struct {
	server, proxy *netnstest.NS
}

func newLink() (l *link, err error) {
	l = &link{}
	if l.server, err = netnstest.Open("caprate"); err != nil {
		return nil, err
	}
	if l.proxy, err = netnstest.Open("caprate"); err != nil {
		l.server.Close()
		return nil, err
	}
	// Neither end has addresses: the server's stack drops what it takes
	// (no route back, no forwarding) after the capture has seen it.
	err = errors.Join(
		l.proxy.SetSysctl("net.ipv6.conf.all.disable_ipv6", "1"),
		l.server.SetSysctl("net.ipv6.conf.all.disable_ipv6", "1"),
		netnstest.Connect(l.server, "veth-s", l.proxy, "veth-p"),
	)
	if err == nil {
		err = l.server.Run("link set veth-s address " + macServer.String())
	}
	if err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

func (l *link) close() error { return errors.Join(l.server.Close(), l.proxy.Close()) }

// trial sends packets at rate (0: as fast as possible) to a fresh capture
// and table, and measures.
func (l *link) trial(ctx context.Context, cfg Config, packets [][]byte, rate float64) (Trial, error) {
	t := Trial{Target: rate, Sent: len(packets)}
	table, err := correlate.New(correlate.Config{Capacity: len(packets) + 1, Linger: time.Hour})
	if err != nil {
		return t, err
	}
	defer table.Close()
	sink, done := endmark.Sink(&marker, table.Observe)
	var c *capture.Capture
	err = l.server.Do(func() (err error) {
		c, err = capture.Open(capture.Config{Interface: "veth-s", Readers: cfg.Readers}, sink)
		return err
	})
	if err != nil {
		return t, err
	}
	defer c.Close()

	cpu0 := rusage(unix.RUSAGE_SELF)
	start := time.Now()
	err = l.proxy.Do(func() error {
		t0 := rusage(unix.RUSAGE_THREAD)
		defer func() { t.Sender = rusage(unix.RUSAGE_THREAD) - t0 }()
		return send("veth-p", append(packets[:len(packets):len(packets)], marker.IP()), rate)
	})
	if err != nil {
		return t, fmt.Errorf("send: %w", err)
	}
	// A full ring drops the marker too: it goes again every few
	// milliseconds until the capture has drained the ring and taken it.
	deadline := time.After(time.Minute)
	for again := time.NewTicker(5 * time.Millisecond); ; {
		select {
		case <-done:
			again.Stop()
		case <-again.C:
			if err := l.proxy.Do(func() error { return send("veth-p", [][]byte{marker.IP()}, 0) }); err != nil {
				return t, fmt.Errorf("send the marker: %w", err)
			}
			continue
		case <-ctx.Done():
			return t, ctx.Err()
		case <-deadline:
			return t, errors.New("the end marker did not reach the capture within a minute")
		}
		break
	}
	t.Took = time.Since(start)
	t.CPU = rusage(unix.RUSAGE_SELF) - cpu0
	if err := c.Close(); err != nil {
		return t, err
	}
	t.Drops = c.Stats().Drops
	t.Entries = table.Len()
	return t, nil
}

// send writes the IP packets to iface, paced to rate packets per second
// unless rate is 0, from the calling thread kept on one CPU.
func send(iface string, packets [][]byte, rate float64) error {
	return inject.Burst(iface, macServer, packets, rate)
}

func rusage(who int) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package kfilter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"time"

	"golang.org/x/net/bpf"

	"github.com/toad-project/toad/bench/endmark"
	"github.com/toad-project/toad/bench/replaycmp"
	"github.com/toad-project/toad/capture"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/internal/craft/gen"
	"github.com/toad-project/toad/internal/inject"
	"github.com/toad-project/toad/internal/netnstest"
	"github.com/toad-project/toad/toa"
)

var (
	macServer = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macProxy  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
)

// marker is the last packet sent towards the server: once the capture has
// seen it, it has seen everything before it.
var marker = craft.Segment{
	Src:   netip.MustParseAddrPort("198.51.100.254:65000"),
	Dst:   netip.MustParseAddrPort("192.0.2.20:8080"),
	Flags: decode.RST,
	Seq:   0x70ad,
}

// traffic is a generated capture as packets for each end of the link.
type traffic struct {
	in, out [][]byte
	truth   replaycmp.Mappings
}

func generate(m replaycmp.Mix) (*traffic, error) {
	gc, err := m.Config()
	if err != nil {
		return nil, err
	}
	gc.Framings = []craft.Framing{{Link: decode.LinkRaw}}
	tr := new(traffic)
	_, err = gen.Stream(gc, func(_ time.Time, _ decode.LinkType, ip []byte) error {
		p := append([]byte(nil), ip...)
		if inbound(p) {
			tr.in = append(tr.in, p)
		} else {
			tr.out = append(tr.out, p)
		}
		return nil
	}, tr.truth.Truth)
	return tr, err
}

// Run measures each filter of cfg with the traffic of cfg.Mix.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	fs := filters(cfg)
	skip := func(why string) []Result {
		out := make([]Result, len(fs))
		for i, f := range fs {
			out[i] = Result{Filter: f, Skipped: why}
		}
		return out
	}
	if os.Geteuid() != 0 {
		return skip("needs root: network namespaces and packet sockets (CAP_NET_ADMIN, CAP_NET_RAW)"), nil
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return skip("needs ip(8) (Debian: apt-get install iproute2)"), nil
	}
	tr, err := generate(cfg.Mix)
	if err != nil {
		return nil, err
	}
	var out []Result
	for _, f := range fs {
		r, err := measure(ctx, f, tr)
		if err != nil {
			return nil, fmt.Errorf("filter %v: %w", f, err)
		}
		logf("kernel filter %v: %d of %d packets reached user space (%.2f%%), %d predicted, %d dropped, mappings agree: %v",
			f, r.Passed, r.Sent, 100*r.Share(), r.Predicted, r.Drops, r.Agrees)
		out = append(out, r)
	}
	return out, nil
}

func measure(ctx context.Context, f capture.Filter, tr *traffic) (r Result, err error) {
	r = Result{Filter: f, Sent: len(tr.in) + len(tr.out), Inbound: len(tr.in), Truth: tr.truth}
	if r.Predicted, err = predict(f, tr.in); err != nil {
		return r, err
	}
	server, err := netnstest.Open("bench")
	if err != nil {
		return r, err
	}
	defer func() { err = errors.Join(err, server.Close()) }()
	proxy, err := netnstest.Open("bench")
	if err != nil {
		return r, err
	}
	defer func() { err = errors.Join(err, proxy.Close()) }()
	// The proxies' end stays silent: no IPv6, no addresses.
	if err := proxy.SetSysctl("net.ipv6.conf.all.disable_ipv6", "1"); err != nil {
		return r, err
	}
	if err := netnstest.Connect(server, "veth-s", proxy, "veth-p"); err != nil {
		return r, err
	}
	if err := server.Run("link set veth-s address " + macServer.String()); err != nil {
		return r, err
	}
	if err := proxy.Run("link set veth-p address " + macProxy.String()); err != nil {
		return r, err
	}

	table, err := correlate.New(correlate.Config{Capacity: max(1, len(tr.in)), Trusted: gen.Trusted, Linger: 100 * 365 * 24 * time.Hour})
	if err != nil {
		return r, err
	}
	defer table.Close()
	sink, done := endmark.Sink(&marker, table.Observe)
	var c *capture.Capture
	err = server.Do(func() (err error) {
		c, err = capture.Open(capture.Config{Interface: "veth-s", Filter: f}, sink)
		return err
	})
	if err != nil {
		return r, err
	}
	defer c.Close()

	if err := send(server, "veth-s", macProxy, tr.out); err != nil {
		return r, fmt.Errorf("send from the server's end: %w", err)
	}
	if err := send(proxy, "veth-p", macServer, append(tr.in[:len(tr.in):len(tr.in)], marker.IP())); err != nil {
		return r, fmt.Errorf("send from the proxies' end: %w", err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return r, ctx.Err()
	case <-time.After(30 * time.Second):
		return r, errors.New("the end marker did not reach the capture within 30s")
	}
	if err := c.Close(); err != nil {
		return r, err
	}
	st := c.Stats()
	r.Attached, r.Drops = st.Filter, st.Drops
	r.Passed = st.KernelPackets - 1 // the marker
	table.Range(func(e correlate.Entry) bool {
		r.Found.Add(e.Key, e.Client)
		return true
	})
	r.Agrees = r.Found == r.Truth
	return r, nil
}

// predict runs the program of filter f over the inbound packets in
// golang.org/x/net/bpf's VM and counts those it accepts. Without a
// program, the socket takes every inbound packet.
func predict(f capture.Filter, in [][]byte) (int, error) {
	prog, err := capture.Program(f, toa.DefaultSet(), capture.DefaultSnapLen)
	if err != nil {
		return 0, err
	}
	if prog == nil {
		return len(in), nil
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range in {
		if v := p[0] >> 4; v != 4 && v != 6 {
			continue // the direction prefix takes IPv4 and IPv6 only
		}
		if keep, err := vm.Run(p); err == nil && keep > 0 {
			n++
		}
	}
	return n, nil
}

// send writes IP packets to iface in ns with a cooked packet socket, as if
// they came from the wire, in order: from one thread kept on one CPU.
func send(ns *netnstest.NS, iface string, dst net.HardwareAddr, packets [][]byte) error {
	return ns.Do(func() error { return inject.Burst(iface, dst, packets, 0) })
}

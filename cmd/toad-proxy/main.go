// Command toad-proxy is a FULLNAT L4 proxy that inserts TOAs, to try an
// origin server and toad locally without a cloud load balancer. It runs the
// fullnat package's forwarder until interrupted.
//
// On one host, with the origin listening on a local non-loopback address:
//
//	sudo toad-proxy -vip 198.51.100.1:80 -origin 192.168.1.10:8080 -proxy-addr 198.51.100.10
//	curl http://198.51.100.1/
//
// The origin's accept() sees 198.51.100.10, and the client's true address
// rides in a 254/8 TOA in the final ACK and early data (DPVS). The TOA-bearing
// packets arrive on the proxy's TUN device (toadproxy0), so that is where
// toad captures. Between hosts or namespaces, the proxy's host must forward
// IP; run it inside a namespace with `ip netns exec NAME toad-proxy ...`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/toad-project/toad/internal/fullnat"
	"github.com/toad-project/toad/toa"
)

func main() {
	cfg, level, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "toad-proxy:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.Logger = log
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("toad-proxy failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg fullnat.Config, log *slog.Logger) error {
	f, err := fullnat.New(cfg)
	if err != nil {
		return err
	}
	defer f.Close()
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err == nil && strings.TrimSpace(string(b)) == "0" {
		log.Info("IP forwarding is off: only clients and origins on this host can use the proxy (sysctl -w net.ipv4.ip_forward=1 to serve others)")
	}
	log.Info("proxying", "device", cfg.Device, "vips", cfg.VIPs, "origin", cfg.Origin, "toa", cfg.TOA4.Dialect, "toa6", cfg.TOA6.Dialect)
	err = f.Run(ctx)
	st := f.Stats()
	log.Info("toad-proxy stopped", "conns", st.Conns, "packets", st.Packets, "toas", st.TOAs,
		"no_room", st.NoRoom, "no_port", st.NoPort, "dropped", st.Dropped)
	return err
}

// parseFlags turns the command line into a Config and a log level.
func parseFlags(args []string, stderr io.Writer) (fullnat.Config, slog.Level, error) {
	var (
		cfg                        fullnat.Config
		level                      slog.Level
		vips, proxyAddrs, origin   string
		toa4, toa6, place, pos, ps string
	)
	fs := flag.NewFlagSet("toad-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&vips, "vip", "", "comma-separated `addr:port` list clients connect to, IPv4 and/or IPv6 (required)")
	fs.StringVar(&origin, "origin", "", "origin server `addr:port` (required)")
	fs.StringVar(&proxyAddrs, "proxy-addr", "", "comma-separated proxy source `addresses` toward the origin, one per family; not assigned to any interface (required)")
	fs.StringVar(&toa4, "toa", "254/8", "TOA for IPv4 clients: a built-in `dialect` such as 200/8, 254/8, 28/7, KIND=LAYOUT for another kind (240=port+ipv4), or none")
	fs.StringVar(&toa6, "toa6", "254/20", "TOA for IPv6 clients: 254/20, 253/20, 201/20, 28/19, KIND=LAYOUT, or none")
	fs.StringVar(&place, "placement", "ack+data", "`segments` carrying the TOA: syn, ack, data joined by + (LVS: syn+ack+data; DPVS >= 1.9.6: ack+data)")
	fs.StringVar(&pos, "position", "after-header", "TOA `position`: after-header (LVS, DPVS) or after-options (jupiter)")
	fs.StringVar(&ps, "ports", "1024-65535", "proxy port `range` toward the origin")
	fs.IntVar(&cfg.MTU, "mtu", fullnat.DefaultMTU, "largest IP packet sent, and the device's MTU")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", fullnat.DefaultIdleTimeout, "forget a connection idle this long")
	fs.DurationVar(&cfg.CloseTimeout, "close-timeout", fullnat.DefaultCloseTimeout, "forget a connection this long after FINs or a RST")
	fs.StringVar(&cfg.Device, "device", fullnat.DefaultDevice, "TUN device `name`")
	fs.TextVar(&level, "log-level", slog.LevelInfo, "log `level`: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return cfg, level, err
	}
	if fs.NArg() > 0 {
		return cfg, level, fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	var errs []error
	for v := range strings.SplitSeq(vips, ",") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		ap, err := netip.ParseAddrPort(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("-vip %q: want addr:port, [v6addr]:port for IPv6", v))
			continue
		}
		cfg.VIPs = append(cfg.VIPs, ap)
	}
	var err error
	if cfg.Origin, err = netip.ParseAddrPort(origin); err != nil {
		errs = append(errs, fmt.Errorf("-origin %q: want addr:port", origin))
	}
	for a := range strings.SplitSeq(proxyAddrs, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		addr, err := netip.ParseAddr(a)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("-proxy-addr %q: want an IP address", a))
		case addr.Is4():
			cfg.ProxyAddr4 = addr
		default:
			cfg.ProxyAddr6 = addr
		}
	}
	if cfg.TOA4, err = parseOption(toa4); err != nil {
		errs = append(errs, fmt.Errorf("-toa: %w", err))
	}
	if cfg.TOA6, err = parseOption(toa6); err != nil {
		errs = append(errs, fmt.Errorf("-toa6: %w", err))
	}
	if cfg.Placement, err = fullnat.ParsePlacement(place); err != nil {
		errs = append(errs, fmt.Errorf("-placement: %w", err))
	}
	if cfg.Position, err = fullnat.ParsePosition(pos); err != nil {
		errs = append(errs, fmt.Errorf("-position: %w", err))
	}
	if cfg.PortMin, cfg.PortMax, err = parsePorts(ps); err != nil {
		errs = append(errs, fmt.Errorf("-ports: %w", err))
	}
	return cfg, level, errors.Join(errs...)
}

// parseOption parses "none", a built-in dialect ("254/8") or a custom kind
// with its layout ("240=port+ipv4").
func parseOption(s string) (fullnat.Option, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "none") {
		return fullnat.Option{}, nil
	}
	if kind, layout, ok := strings.Cut(s, "="); ok {
		k, err := strconv.ParseUint(kind, 10, 8)
		if err != nil || k <= 1 {
			return fullnat.Option{}, fmt.Errorf("TOA %q: kind must be 2-255", s)
		}
		l, err := toa.ParseLayout(layout)
		if err != nil {
			return fullnat.Option{}, err
		}
		return fullnat.Option{Dialect: toa.Dialect{Kind: uint8(k), Len: l.Len()}, Layout: l}, nil
	}
	d, err := toa.ParseDialect(s)
	if err != nil {
		return fullnat.Option{}, err
	}
	if toa.BuiltinLayout(d) == toa.LayoutNone {
		return fullnat.Option{}, fmt.Errorf("TOA %v is not built in: write KIND=LAYOUT, for example %d=port+ipv4", d, d.Kind)
	}
	return fullnat.Option{Dialect: d}, nil
}

// parsePorts parses "MIN-MAX".
func parsePorts(s string) (lo, hi uint16, _ error) {
	a, b, ok := strings.Cut(s, "-")
	x, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	y, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	if !ok || err1 != nil || err2 != nil || x == 0 || x > y {
		return 0, 0, fmt.Errorf("%q: want MIN-MAX with 1 <= MIN <= MAX <= 65535", s)
	}
	return uint16(x), uint16(y), nil
}

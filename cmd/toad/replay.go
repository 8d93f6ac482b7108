package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/toad-project/toad/capture"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/replay"
	"github.com/toad-project/toad/toa"
)

const replayUsage = `usage: toad replay [flags] FILE...

Replays pcap and pcapng files (gzip-compressed or not; "-" is standard
input) as one capture, in capture-time order whatever order they are named
in, and prints every connection a TOA resolved, once, as it ends: its peer
(the proxy), local address, real client, dialect, state (fin, rst, reused:
a new connection took its 4-tuple, or open at the end), and when it opened
and closed. A table, or JSON Lines with --json. --at, --peer, --local and
--client ask which connection it was:

  toad replay --at 2024-05-01T14:02:00Z --peer 198.51.100.10:40001 capture-*.pcap

A summary goes to standard error: what was read, gaps and overlaps between
the files, and the connections' counters.

flags:
`

// replayCommand runs toad replay: the flags say what to ask of which
// files, package replay answers.
func replayCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, verbose, err := parseReplay(args, stdout)
	if err != nil {
		return err
	}
	cfg.Out = stdout
	if verbose {
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		cfg.Done = func(f capture.File) {
			log.Debug("replayed", "file", f.Name, "packets", f.Stats.Packets, "records", f.Stats.Records,
				"rejected", f.Stats.Rejected(), "first", f.First, "last", f.Last)
		}
	}
	s, err := replay.Run(ctx, cfg)
	if err != nil {
		return err
	}
	_, err = s.WriteTo(stderr)
	return err
}

// parseReplay parses toad replay's arguments into a replay.Config and -v;
// -h prints the usage to help.
func parseReplay(args []string, help io.Writer) (replay.Config, bool, error) {
	cfg := replay.Config{Dialects: toa.DefaultSet(), Linger: correlate.DefaultLinger, Gap: replay.DefaultGap}
	var verbose, jsonOut bool
	fs := flag.NewFlagSet("toad replay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&jsonOut, "json", false, "print JSON Lines, one object per connection")
	toaFlags(fs, &cfg.Trusted, &cfg.Dialects)
	fs.Func("at", "only the connections open at this `time`, RFC 3339 (2024-05-01T14:02:00Z)", func(s string) error {
		t, err := replay.ParseTime(s)
		cfg.Query.At = t
		return err
	})
	for _, e := range []struct {
		name, what string
		to         *replay.Endpoint
	}{
		{"peer", "from this peer (the proxy)", &cfg.Query.Peer},
		{"local", "to this local address (the server)", &cfg.Query.Local},
		{"client", "whose TOA named this client", &cfg.Query.Client},
	} {
		fs.Func(e.name, "only the connections "+e.what+": an `address` (any port) or address:port ([2001:db8::1]:40001 for IPv6)", func(s string) error {
			v, err := replay.ParseEndpoint(s)
			*e.to = v
			return err
		})
	}
	fs.BoolVar(&cfg.Query.All, "all", false, "print the connections without a TOA too")
	fs.DurationVar(&cfg.Linger, "linger", cfg.Linger, "how long, in capture time, an ended connection's 4-tuple still takes its late segments")
	fs.DurationVar(&cfg.Gap, "gap", cfg.Gap, "report a gap between files longer than this")
	fs.BoolVar(&verbose, "v", false, "log each file replayed")
	files, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(help, replayUsage)
		fs.SetOutput(help)
		fs.PrintDefaults()
		return cfg, false, err
	}
	if err != nil {
		return cfg, false, err
	}
	switch {
	case len(files) == 0:
		return cfg, false, usagef("no capture file given: toad replay [flags] FILE...")
	case cfg.Linger <= 0:
		return cfg, false, usagef("--linger %v: want a positive duration such as 60s", cfg.Linger)
	case cfg.Gap <= 0:
		return cfg, false, usagef("--gap %v: want a positive duration such as 10s", cfg.Gap)
	}
	if jsonOut {
		cfg.Format = replay.JSON
	}
	cfg.Files = files
	return cfg, verbose, nil
}

// toaFlags defines --trusted-proxies and --dialects, which serve and replay
// share, storing into trusted and dialects.
func toaFlags(fs *flag.FlagSet, trusted *[]netip.Prefix, dialects **toa.Set) {
	fs.Func("trusted-proxies", "comma-separated CIDR `ranges` of the proxies whose TOAs to believe (default: every peer)", func(s string) error {
		ps, err := parsePrefixes(s)
		*trusted = append(*trusted, ps...)
		return err
	})
	fs.Func("dialects", "TOA dialects to read: default, all, none, or a `list` such as 200/8,254/20 or +253/8,-28/7", func(s string) error {
		set, err := toa.ParseSet(s)
		if err == nil {
			*dialects = set
		}
		return err
	})
}

// parsePrefixes parses a comma-separated list of CIDR prefixes; a bare
// address is a prefix of one.
func parsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if p, err := netip.ParsePrefix(item); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR range (want e.g. 198.51.100.0/24 or 2001:db8::/32)", item)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	if len(out) == 0 {
		return nil, errors.New("empty list (want e.g. 198.51.100.0/24,2001:db8::/32)")
	}
	return out, nil
}

package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/toad-project/toad/capture"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/toa"
)

const replayUsage = `usage: toad replay [flags] FILE...

Replays pcap and pcapng files (gzip-compressed or not; "-" is standard
input) through the decoder and the connection table, as the daemon would
have seen them, and prints the connections whose real client a TOA named:
a table, or JSON Lines with --json. A summary of the counters goes to
standard error.

flags:
`

// replayConfig is toad replay's command line.
type replayConfig struct {
	Files    []string
	JSON     bool
	Trusted  []netip.Prefix
	Dialects *toa.Set
	Linger   time.Duration
	Verbose  bool

	Stdout, Stderr io.Writer
}

func replayCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseReplay(args, stdout)
	if err != nil {
		return err
	}
	cfg.Stdout, cfg.Stderr = stdout, stderr
	level := slog.LevelWarn
	if cfg.Verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	return runReplay(ctx, cfg, log)
}

// parseReplay parses toad replay's arguments; -h prints the usage to help.
func parseReplay(args []string, help io.Writer) (replayConfig, error) {
	cfg := replayConfig{Dialects: toa.DefaultSet(), Linger: correlate.DefaultLinger}
	fs := flag.NewFlagSet("toad replay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&cfg.JSON, "json", false, "print JSON Lines, one object per connection")
	toaFlags(fs, &cfg.Trusted, &cfg.Dialects)
	fs.DurationVar(&cfg.Linger, "linger", cfg.Linger, "how long, in capture time, a closing connection is still held")
	fs.BoolVar(&cfg.Verbose, "v", false, "log each file replayed")
	files, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(help, replayUsage)
		fs.SetOutput(help)
		fs.PrintDefaults()
		return cfg, err
	}
	if err != nil {
		return cfg, err
	}
	switch {
	case len(files) == 0:
		return cfg, usagef("no capture file given: toad replay [flags] FILE...")
	case cfg.Linger <= 0:
		return cfg, usagef("--linger %v: want a positive duration such as 60s", cfg.Linger)
	}
	cfg.Files = files
	return cfg, nil
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

func runReplay(ctx context.Context, cfg replayConfig, log *slog.Logger) error {
	table, err := correlate.New(correlate.Config{Trusted: cfg.Trusted, Linger: cfg.Linger})
	if err != nil {
		return err
	}
	defer table.Close()
	dec := decode.New(cfg.Dialects)
	sink := &incoming{table: table, servers: map[correlate.Key]struct{}{}}
	var total capture.Stats
	for _, name := range cfg.Files {
		start := time.Now()
		st, err := replayFile(ctx, name, dec, sink)
		addStats(&total, &st)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		log.Debug("replayed", "file", name, "packets", st.Packets, "records", st.Records,
			"rejected", st.Rejected(), "took", time.Since(start))
	}
	conns := resolved(table)
	if cfg.JSON {
		err = writeJSON(cfg.Stdout, conns)
	} else {
		err = writeTable(cfg.Stdout, conns)
	}
	if err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	writeSummary(cfg.Stderr, len(cfg.Files), &total, table.Stats())
	return nil
}

func replayFile(ctx context.Context, name string, dec *decode.Decoder, sink capture.Sink) (capture.Stats, error) {
	if name == "-" {
		return capture.Replay(ctx, os.Stdin, dec, sink)
	}
	f, err := os.Open(name)
	if err != nil {
		return capture.Stats{}, errors.Unwrap(err) // the *PathError's path is the name already given
	}
	defer f.Close()
	return capture.Replay(ctx, f, dec, sink)
}

// incoming passes the table what the daemon would have seen of a capture
// taken on the server, which holds both directions: the daemon only sees
// what arrives. The server's own FIN and RST would otherwise close
// nothing and count as connections without a TOA; they are recognised by
// the SYN-ACK the server sent first. (Outgoing data never matters to the
// table, and no outgoing segment carries a TOA.)
type incoming struct {
	table   *correlate.Table
	servers map[correlate.Key]struct{} // flows the server side of, by its SYN-ACK
}

// maxServers bounds the memory incoming spends; past it, it starts over
// and lets a few server-side closes through.
const maxServers = 1 << 20

func (in *incoming) Observe(r *decode.Record) {
	switch {
	case r.Flags&(decode.SYN|decode.ACK) == decode.SYN|decode.ACK:
		if len(in.servers) >= maxServers {
			clear(in.servers)
		}
		in.servers[correlate.KeyOf(r.Peer, r.Local)] = struct{}{}
		return
	case r.Flags&(decode.FIN|decode.RST) != 0:
		if _, ok := in.servers[correlate.KeyOf(r.Peer, r.Local)]; ok {
			return
		}
	}
	in.table.Observe(r)
}

func (in *incoming) Expire(now time.Time) int { return in.table.Expire(now) }

func addStats(dst, s *capture.Stats) {
	dst.Packets += s.Packets
	dst.Records += s.Records
	for i, n := range s.Failures {
		dst.Failures[i] += n
	}
}

// resolved returns the table's entries with a client, by first TOA time,
// then key.
func resolved(t *correlate.Table) []correlate.Entry {
	var out []correlate.Entry
	t.Range(func(e correlate.Entry) bool {
		if !e.Client.IsZero() {
			out = append(out, e)
		}
		return true
	})
	slices.SortFunc(out, func(a, b correlate.Entry) int {
		return cmp.Or(a.FirstSeen.Compare(b.FirstSeen), a.Key.Peer.Compare(b.Key.Peer), a.Key.Local.Compare(b.Key.Local))
	})
	return out
}

// connJSON is one line of --json output.
type connJSON struct {
	Peer       string  `json:"peer"`
	Local      string  `json:"local"`
	Client     string  `json:"client"`
	ClientIP   string  `json:"client_ip"`
	ClientPort *uint16 `json:"client_port,omitempty"` // absent for dialects without a port
	Dialect    string  `json:"dialect"`
	State      string  `json:"state"`
	FirstSeen  string  `json:"first_seen"`
}

func writeJSON(w io.Writer, conns []correlate.Entry) error {
	enc := json.NewEncoder(w)
	for _, e := range conns {
		j := connJSON{
			Peer:      e.Key.Peer.String(),
			Local:     e.Key.Local.String(),
			Client:    e.Client.String(),
			ClientIP:  e.Client.Addr.String(),
			Dialect:   e.Client.Dialect.String(),
			State:     e.State.String(),
			FirstSeen: e.FirstSeen.UTC().Format(time.RFC3339Nano),
		}
		if e.Client.HasPort {
			p := e.Client.Port
			j.ClientPort = &p
		}
		if err := enc.Encode(j); err != nil {
			return err
		}
	}
	return nil
}

func writeTable(w io.Writer, conns []correlate.Entry) error {
	if len(conns) == 0 {
		_, err := fmt.Fprintln(w, "no connection carried a TOA")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tLOCAL\tCLIENT\tDIALECT\tSTATE\tFIRST SEEN")
	for _, e := range conns {
		fmt.Fprintf(tw, "%v\t%v\t%v\t%v\t%v\t%s\n", e.Key.Peer, e.Key.Local, e.Client, e.Client.Dialect, e.State,
			e.FirstSeen.UTC().Format("2006-01-02T15:04:05.000000Z"))
	}
	return tw.Flush()
}

func writeSummary(w io.Writer, files int, st *capture.Stats, ts correlate.Stats) {
	plural := "s"
	if files == 1 {
		plural = ""
	}
	fmt.Fprintf(w, "replayed %d file%s: %d packets, %d records, %d rejected (%s)\n",
		files, plural, st.Packets, st.Records, st.Rejected(), st.FailureSummary())
	trust := "TOAs believed from every peer (no --trusted-proxies)"
	if !ts.AllTrusted {
		trust = fmt.Sprintf("%d segments with a TOA from untrusted peers ignored", ts.Untrusted)
	}
	fmt.Fprintf(w, "connections: %d with a TOA (%d held: %d open, %d closing; %d expired), %d closed without one; "+
		"%d conflicting TOAs, %d segments with several; %s\n",
		ts.ConnsWithTOA, ts.Entries, ts.Entries-ts.Closing, ts.Closing, ts.Expired, ts.ConnsWithoutTOA,
		ts.Conflicts, ts.MultipleTOA, trust)
}

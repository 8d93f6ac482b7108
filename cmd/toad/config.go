package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/toad-project/toad/daemon"
)

const serveUsage = `usage: toad serve [flags]

Captures TCP segments carrying TOAs, keeps the connection table, and
answers the toad.v1.LookupService over gRPC on a unix socket (and on TCP
when --listen says so). With --pcap it replays capture files into the table instead
of capturing, then keeps serving what they held (the table is then frozen:
nothing expires).

Health (grpc.health.v1) turns SERVING, and /readyz 200, once the capture
is attached (or the files are loaded) and the table is recovered from
--state-dir. Health
answers on the API listeners and, alone, on --health-listen; /metrics,
/healthz and /readyz on --metrics-listen.

SIGINT or SIGTERM: NOT_SERVING (and /readyz 503) for --drain, a graceful
stop of the API, bounded by --shutdown-timeout (drain included), then the
capture stops and the state directory is compacted.

With --state-dir, every change of the table is written to a journal there
within 10ms (fsync'd with --fsync), so that a restart after a SIGKILL or an
OOM kill answers as the table did; at start, the last snapshot and the
journal after it are loaded, without the closed connections whose linger
has passed. A full disk is warned of and counted; toad serves from memory
until it can write again. --snapshot FILE, deprecated, keeps the state in
FILE.d and loads once the snapshot an older toad left at FILE.

Every flag may also be set in the environment as TOAD_ and the flag's
name in capitals with underscores (--trusted-proxies: TOAD_TRUSTED_PROXIES,
--allow-remote: TOAD_ALLOW_REMOTE=true). A flag on the command line wins
over the environment. TOAD_PCAP takes a comma-separated list.

Exit status: 0 after SIGINT or SIGTERM, 2 for a bad setting, 1 when toad
could not run (an interface that does not exist, a path it cannot write,
an address in use, the capture failing).

flags:
`

// serveConfig is toad serve's configuration, from flags and environment:
// the daemon's, and how it logs.
type serveConfig struct {
	daemon.Config
	LogFormat string // text or json
	LogLevel  slog.Level
}

// envPrefix starts the environment variable of every setting.
const envPrefix = "TOAD_"

// envName is the environment variable of flag name: TOAD_TRUSTED_PROXIES
// for trusted-proxies.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// parseServe parses toad serve's arguments, then takes every flag not
// given on the command line from environ (KEY=value strings, as
// os.Environ returns). -h prints the usage to help and returns
// flag.ErrHelp. Errors are usage errors that name the flag or variable.
func parseServe(args, environ []string, help io.Writer) (serveConfig, error) {
	cfg := serveConfig{Config: daemon.DefaultConfig(), LogFormat: "text", LogLevel: slog.LevelInfo}
	fs := flag.NewFlagSet("toad serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)

	fs.StringVar(&cfg.Interface, "interface", "", "`name` of the interface to capture on (default: every interface)")
	fs.Func("pcap", "replay this pcap or pcapng `file` instead of capturing live (repeatable)", func(s string) error {
		for f := range strings.SplitSeq(s, ",") {
			if f = strings.TrimSpace(f); f != "" {
				cfg.Pcaps = append(cfg.Pcaps, f)
			}
		}
		return nil
	})

	fs.StringVar(&cfg.Socket, "socket", cfg.Socket, "unix socket `path` to serve lookups on (mode 0660, directory made if missing); empty for none")
	fs.StringVar(&cfg.SocketGroup, "socket-group", "", "`group` (name or number) given the unix socket, whose members may then ask (default: toad's own)")
	fs.StringVar(&cfg.Listen, "listen", "", "TCP `address` to serve lookups on too, such as 127.0.0.1:50051: any local user may then ask; loopback unless --allow-remote")
	fs.BoolVar(&cfg.AllowRemote, "allow-remote", false, "allow a --listen address that is not loopback: the API reveals client addresses")
	fs.StringVar(&cfg.HealthListen, "health-listen", cfg.HealthListen, "TCP `address` serving gRPC health alone, for probes; empty for none")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", cfg.MetricsListen, "TCP `address` serving HTTP /metrics, /healthz and /readyz; empty for none")
	preloadGiven := false
	preloadFlags(fs, &cfg.Config, &preloadGiven)

	toaFlags(fs, &cfg.Trusted, &cfg.Dialects)
	fs.DurationVar(&cfg.Linger, "linger", cfg.Linger, "how long a closing connection is still answered")
	fs.DurationVar(&cfg.MaxWait, "max-wait", cfg.MaxWait, "the longest a lookup may wait for the capture to catch up with it (0: lookups never wait)")
	fs.IntVar(&cfg.Capacity, "capacity", cfg.Capacity, "the most `connections` the table holds; past it, closing then the oldest are evicted")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 0, "forget an open connection that saw no segment for this long (0: keep it until it closes)")
	fs.StringVar(&cfg.StateDir, "state-dir", "", "`directory` the table is kept in as it changes, and recovered from at start; empty for none")
	fs.BoolVar(&cfg.Fsync, "fsync", false, "with --state-dir, fsync every group of changes, so that they survive a crash of the node too")
	fs.StringVar(&cfg.Snapshot, "snapshot", "", "deprecated: `file` of an older toad's snapshot, loaded once into --state-dir (default FILE.d)")

	fs.IntVar(&cfg.Readers, "readers", cfg.Readers, "capture sockets sharing the traffic by flow hash, 1-64")
	fs.Func("ring-size", "each capture socket's ring, in `bytes` (suffixes KiB, MiB, GiB) (default 4MiB)", func(s string) error {
		n, err := parseSize(s)
		cfg.RingSize = n
		return err
	})
	fs.Func("block-size", "the unit in `bytes` in which the kernel allocates the capture ring, a multiple of 4KiB (default 64KiB)", func(s string) error {
		n, err := parseSize(s)
		cfg.BlockSize = n
		return err
	})
	fs.DurationVar(&cfg.BlockTimeout, "block-timeout", 0, "deprecated and ignored: the capture hands each packet over as it arrives")
	fs.IntVar(&cfg.SnapLen, "snap-len", cfg.SnapLen, "`bytes` of each packet captured, 128-65535")
	fs.Func("filter", "the strongest kernel `filter` to try: toa, tcp, direction or none (default toa)", func(s string) error {
		return cfg.Filter.UnmarshalText([]byte(s))
	})

	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "log `format`: text or json")
	fs.TextVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "log `level`: debug, info, warn or error")
	fs.DurationVar(&cfg.Drain, "drain", cfg.Drain, "on shutdown, how long health reports NOT_SERVING before the API stops taking calls")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "bound on the drain and the graceful stop of the API together")

	rest, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(help, serveUsage)
		printFlags(help, fs)
		return cfg, err
	}
	if err != nil {
		return cfg, err
	}
	if err := applyEnv(fs, environ, &cfg); err != nil {
		return cfg, err
	}
	if len(rest) > 0 {
		return cfg, usagef("unexpected arguments %q (capture files go with --pcap FILE)", rest)
	}
	settlePreload(&cfg.Config, preloadGiven)
	return cfg, cfg.validate()
}

// applyEnv sets every flag not given on the command line from its
// environment variable, and notes the TOAD_* variables that name no flag.
func applyEnv(fs *flag.FlagSet, environ []string, cfg *serveConfig) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	known := map[string]*flag.Flag{}
	fs.VisitAll(func(f *flag.Flag) { known[envName(f.Name)] = f })
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, envPrefix) {
			continue
		}
		f, ok := known[k]
		if !ok {
			if !kubernetesServiceVar(k) {
				cfg.UnknownEnv = append(cfg.UnknownEnv, k)
			}
			continue
		}
		if given[f.Name] {
			continue
		}
		if err := fs.Set(f.Name, v); err != nil {
			if isBool(f) {
				err = errors.New("want true or false")
			}
			return usagef("%s=%q: %v", k, v, err)
		}
		cfg.FromEnv = append(cfg.FromEnv, k)
	}
	slices.Sort(cfg.FromEnv)
	slices.Sort(cfg.UnknownEnv)
	return nil
}

// kubernetesServiceVar reports whether k is one of the variables the
// kubelet sets for a Service named toad (TOAD_SERVICE_HOST, TOAD_PORT,
// TOAD_PORT_50052_TCP_ADDR...), which are no settings and no typos.
func kubernetesServiceVar(k string) bool {
	return k == "TOAD_PORT" || strings.HasPrefix(k, "TOAD_PORT_") || strings.HasPrefix(k, "TOAD_SERVICE_")
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// validate checks the settings: the daemon's, and how it logs.
func (c *serveConfig) validate() error {
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return usagef("--log-format %q: want text or json", c.LogFormat)
	}
	if err := c.Config.Validate(); err != nil {
		return &usageError{err}
	}
	return nil
}

// printFlags prints fs's flags the way toad's documentation writes them:
// with two dashes, and with the environment variable of each.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		if isBool(f) {
			name = ""
		}
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%s   (%s)\n    \t%s", line, envName(f.Name), strings.ReplaceAll(usage, "\n", "\n    \t"))
		if !isZeroDefault(f) {
			if v := reflect.ValueOf(f.Value); v.Kind() == reflect.Pointer && v.Elem().Kind() == reflect.String {
				fmt.Fprintf(w, " (default %q)", f.DefValue)
			} else {
				fmt.Fprintf(w, " (default %v)", f.DefValue)
			}
		}
		fmt.Fprintln(w)
	})
}

// isZeroDefault reports whether f's default goes unsaid: a zero value, or
// a Func flag's, whose usage says it.
func isZeroDefault(f *flag.Flag) bool {
	switch f.DefValue {
	case "", "0", "0s", "false":
		return true
	}
	return false
}

// parseSize parses a size in bytes, with an optional binary suffix: 4096,
// 64KiB, 4MiB, 1GiB (K, M, G alone mean the same).
func parseSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if n, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("%q is not a size: want bytes, or a number with KiB, MiB or GiB", s)
	}
	return n * mult, nil
}

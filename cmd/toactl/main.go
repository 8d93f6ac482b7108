// Command toactl asks a running toad who is really behind a connection.
//
//	toactl [--addr ADDR] [--json] lookup [--wait D] PEER LOCAL
//	toactl [--addr ADDR] [--json] watch [--port N]
//	toactl [--addr ADDR] [--json] stats
//
// ADDR is unix:///path/to.sock (the default is unix:///run/toad/toad.sock),
// a socket path, or host:port. PEER and LOCAL are the connection's addresses
// as the server's socket reports them, for example 198.51.100.10:40001 and
// 192.0.2.20:8080.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/toad-project/toad/api/client"
	"github.com/toad-project/toad/internal/interspersed"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Config is a parsed command line.
type Config struct {
	Addr    string
	JSON    bool
	Timeout time.Duration
	Command string
	Wait    time.Duration // lookup
	Port    uint          // watch
	Args    []string
}

const usage = `usage:
  toactl [flags] lookup [--wait D] PEER LOCAL   the real client of one connection
  toactl [flags] watch [--port N]               stream connection events
  toactl [flags] stats                          toad's counters

PEER and LOCAL are the connection's addresses as the server's socket reports
them, for example 198.51.100.10:40001 192.0.2.20:8080.

flags:
`

// cli runs toactl with args and returns the exit status: 0 on success, 1
// when the command failed (a connection toad does not know included), 2 for
// a bad command line.
func cli(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "toactl: %v\n", err)
		return 2
	}
	if err := run(ctx, cfg, stdout); err != nil {
		fmt.Fprintf(stderr, "toactl: %v\n", err)
		return 1
	}
	return 0
}

func parse(args []string, stderr io.Writer) (Config, error) {
	cfg := Config{Addr: client.DefaultTarget, Timeout: 10 * time.Second}
	fs := flag.NewFlagSet("toactl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "toad's address: unix:///path/to.sock, a socket path, or host:port")
	fs.BoolVar(&cfg.JSON, "json", false, "print JSON (JSON Lines for watch)")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "bound on lookup and stats calls")
	fs.DurationVar(&cfg.Wait, "wait", 0, "lookup: wait up to this long for a handshake toad has not seen yet")
	fs.UintVar(&cfg.Port, "port", 0, "watch: only connections to this local port (0: all)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	pos, err := interspersed.Parse(fs, args)
	if err != nil {
		return cfg, err
	}
	if len(pos) == 0 {
		fs.Usage()
		return cfg, errors.New("no command: want lookup, watch or stats")
	}
	cfg.Command, cfg.Args = pos[0], pos[1:]
	want := map[string]int{"lookup": 2, "watch": 0, "stats": 0}
	n, ok := want[cfg.Command]
	switch {
	case !ok:
		return cfg, fmt.Errorf("unknown command %q: want lookup, watch or stats", cfg.Command)
	case len(cfg.Args) != n && cfg.Command == "lookup":
		return cfg, fmt.Errorf("lookup takes PEER and LOCAL, for example: toactl lookup 198.51.100.10:40001 192.0.2.20:8080")
	case len(cfg.Args) != n:
		return cfg, fmt.Errorf("%s takes no arguments, got %q", cfg.Command, cfg.Args)
	case cfg.Port > 65535:
		return cfg, fmt.Errorf("--port %d: want 1-65535, or 0 for every port", cfg.Port)
	case cfg.Wait < 0:
		return cfg, fmt.Errorf("--wait %v: must not be negative", cfg.Wait)
	}
	return cfg, nil
}

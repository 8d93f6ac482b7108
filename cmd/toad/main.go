// Command toad tells applications the real client address of TCP
// connections that reached them through an L4 proxy, read from the TOA
// option the proxy adds.
//
//	toad replay [flags] FILE...   replay pcap/pcapng files, print the connections
//	toad serve [flags]            capture and answer lookups over gRPC
//	toad version                  print the version and how it was built
//
// Run "toad COMMAND -h" for a command's flags.
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

	"github.com/toad-project/toad/internal/interspersed"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: toad COMMAND [flags] [arguments]

commands:
  replay [flags] FILE...   replay pcap/pcapng files and print the connections they resolve
  serve [flags]            capture live (or replay --pcap files) and answer lookups over gRPC
  version                  print the version, the Go release and the VCS revision

Run "toad COMMAND -h" for a command's flags.
`

// cli runs the command args name, with the process's environment, and
// returns the exit status: 0 on success, 1 when the command failed, 2 for
// a bad command line.
func cli(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return command(ctx, args, os.Environ(), stdout, stderr)
}

// command is cli with the environment given: KEY=value strings.
func command(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	name, rest := args[0], args[1:]
	var err error
	switch name {
	case "replay":
		err = replayCommand(ctx, rest, stdout, stderr)
	case "serve":
		err = serveCommand(ctx, rest, environ, stdout, stderr)
	case "version", "-version", "--version":
		err = versionCommand(rest, stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "toad: unknown command %q\n\n%s", name, usage)
		return 2
	}
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "toad %s: %v (run \"toad %s -h\" for usage)\n", name, err, name)
		return 2
	}
	fmt.Fprintf(stderr, "toad %s: %v\n", name, err)
	return 1
}

// usageError is a bad command line: exit status 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error {
	return &usageError{fmt.Errorf(format, a...)}
}

// parseInterspersed is interspersed.Parse whose errors are usage errors,
// flag.ErrHelp aside.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	pos, err := interspersed.Parse(fs, args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return nil, &usageError{err}
	}
	return pos, err
}

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is toad's release. Builds stamp it:
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/toad
var version = "dev"

// build is what a binary knows of how it was built.
type build struct {
	Version  string // the stamped release, or "dev"
	Go       string // the Go release that compiled it
	Revision string // the VCS commit, "unknown" when the build recorded none
	Time     string // the commit's time, "" when unknown
	Modified bool   // the working tree had changes
}

// buildInfo reads the build's version, Go release and VCS stamps.
func buildInfo() build {
	b := build{Version: version, Go: runtime.Version(), Revision: "unknown"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.Go = bi.GoVersion
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

const versionUsage = `usage: toad version

Prints toad's version, the Go release that built it, and the VCS revision
it was built from ("unknown" for builds without VCS information, such as
-buildvcs=false or a source tree without .git).
`

func versionCommand(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("toad version", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, versionUsage)
		return err
	case err != nil:
		return &usageError{err}
	case fs.NArg() > 0:
		return usagef("unexpected arguments %q", fs.Args())
	}
	b := buildInfo()
	rev := b.Revision
	if b.Modified {
		rev += " (modified)"
	}
	fmt.Fprintf(stdout, "toad %s\ngo %s\nrevision %s\n", b.Version, b.Go, rev)
	if b.Time != "" {
		fmt.Fprintf(stdout, "time %s\n", b.Time)
	}
	return nil
}

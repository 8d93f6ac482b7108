package main

import (
	"context"
	"encoding"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"

	"github.com/toad-project/toad/daemon"
)

func serveCommand(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	cfg, err := parseServe(args, environ, stdout)
	if err != nil {
		return err
	}
	b := buildInfo()
	cfg.Build = daemon.Build{Version: b.Version, Revision: b.Revision, Go: b.Go}
	cfg.Logger = newLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	return daemon.Run(ctx, cfg.Config)
}

// newLogger returns a logger writing to w in format, text or json.
func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		opts.ReplaceAttr = readableJSON
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// readableJSON writes durations ("1.5s", not 1500000000) and values that
// only have a String method (enums such as capture.Filter) as the text
// logs do, rather than as bare numbers.
func readableJSON(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindDuration:
		a.Value = slog.StringValue(a.Value.Duration().String())
	case slog.KindAny:
		switch v := a.Value.Any().(type) {
		case error, json.Marshaler, encoding.TextMarshaler:
		case fmt.Stringer:
			a.Value = slog.StringValue(v.String())
		}
	}
	return a
}

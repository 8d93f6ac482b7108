//go:build !linux

package caprate

import "context"

// Run reports the measurement skipped: live capture is Linux only.
func Run(_ context.Context, cfg Config) (Result, error) {
	cfg.defaults()
	return Result{Config: cfg, Skipped: "live capture needs Linux"}, nil
}

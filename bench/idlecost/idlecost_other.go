//go:build !linux

package idlecost

import "context"

// Run reports the measurement skipped: it reads Linux's /proc.
func Run(_ context.Context, cfg Config) (Result, error) {
	return Result{Skipped: "needs Linux"}, nil
}

//go:build !linux

package kfilter

import "context"

// Run reports every filter skipped: live capture is Linux only.
func Run(_ context.Context, cfg Config) ([]Result, error) {
	var out []Result
	for _, f := range filters(cfg) {
		out = append(out, Result{Filter: f, Skipped: "live capture needs Linux"})
	}
	return out, nil
}

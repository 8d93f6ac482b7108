//go:build !unix

package api_test

import "time"

// cpuTime is not measured here: the per-CPU-second rates are left out.
func cpuTime() time.Duration { return 0 }

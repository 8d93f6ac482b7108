//go:build !unix

package apicmp

import "time"

// cpuTime is not measured here.
func cpuTime() time.Duration { return 0 }

package idlecost

import "time"

// Config says what to run and for how long.
type Config struct {
	// Bin is the toad command to run.
	Bin string
	// Duration is the quiet period measured; 0 means 60s.
	Duration time.Duration
	// Settle is how long toad runs, serving, before the period starts, so
	// that what it does once after starting (its first housekeeping, the
	// runtime's first collections) is left out; 0 means 5s.
	Settle time.Duration
	// Logf, when set, reports progress.
	Logf func(format string, args ...any)
}

// Result is what toad used over the quiet period.
type Result struct {
	Skipped  string
	Duration time.Duration
	// Settle is how long toad had served when the period started.
	Settle time.Duration
	// CPU is toad's CPU time over it, user and system, at the resolution
	// of /proc (10 ms).
	CPU time.Duration
	// Switches counts the times toad's threads went to sleep (their
	// voluntary context switches): its wakeups.
	Switches int64
	// Threads is how many threads toad had.
	Threads int
}

// Share is toad's CPU time as a share of one core over the period.
func (r *Result) Share() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.CPU) / float64(r.Duration)
}

// WakeupsPerSecond is the switches per second.
func (r *Result) WakeupsPerSecond() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Switches) / r.Duration.Seconds()
}

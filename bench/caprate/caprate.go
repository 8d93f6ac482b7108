package caprate

import "time"

// Config says how much to send.
type Config struct {
	// Packets is how many segments each trial sends; 0 means 200,000.
	Packets int
	// Readers is the capture's; 0 means 1.
	Readers int
	// Steps is how many paced trials search for the highest rate without
	// drops when the first, unpaced, dropped some; 0 means 5.
	Steps int
	// Logf, when set, reports progress.
	Logf func(format string, args ...any)
}

func (c *Config) defaults() {
	if c.Packets == 0 {
		c.Packets = 200_000
	}
	if c.Readers == 0 {
		c.Readers = 1
	}
	if c.Steps == 0 {
		c.Steps = 5
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// Trial is one run at one rate.
type Trial struct {
	// Target is the rate asked for, segments per second; 0 for as fast as
	// the sender can.
	Target float64
	// Sent is how many segments the sender wrote; Took, from the first
	// write to the table holding the last segment.
	Sent int
	Took time.Duration
	// Drops is how many the kernel dropped because the ring was full;
	// Entries how many connections the table held at the end.
	Drops   uint64
	Entries int
	// CPU is the process's CPU time over the trial, Sender its sending
	// thread's (the kernel's receive path runs there too).
	CPU, Sender time.Duration
}

// Rate is the segments per second that reached the table.
func (t *Trial) Rate() float64 {
	if t.Took <= 0 {
		return 0
	}
	return float64(t.Sent) / t.Took.Seconds()
}

// Clean reports that nothing was dropped and every connection arrived.
func (t *Trial) Clean() bool { return t.Drops == 0 && t.Entries == t.Sent }

// CPUPerPacket is the process's CPU time per segment, sender included.
func (t *Trial) CPUPerPacket() time.Duration { return t.CPU / time.Duration(max(t.Sent, 1)) }

// CapturePerPacket is the CPU time per segment of everything but the
// sender's thread: the capture's readers, the decoder and the table.
func (t *Trial) CapturePerPacket() time.Duration {
	return (t.CPU - t.Sender) / time.Duration(max(t.Sent, 1))
}

// Result is the whole measurement.
type Result struct {
	// Skipped says why nothing was measured.
	Skipped string
	Config  Config
	Trials  []Trial
	// Best is the fastest clean trial, nil when none was.
	Best *Trial
}

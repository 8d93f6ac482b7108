//go:build race

package correlate_test

// raceEnabled reports whether the race detector is on.
const raceEnabled = true

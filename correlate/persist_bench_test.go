package correlate_test

import (
	"testing"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/journal"
)

// persist makes the benchmarks' tables keep a journal.
var persist bool

// BenchmarkPersist runs the table's benchmarks with persistence off, then
// on (a journal in a temporary directory, written every 10ms), in one run,
// so that their ratio is measured on the same machine at the same time.
// ns/op is the capture's side: the journal's writer runs on its own
// goroutine, whose CPU BenchmarkWorkload in journal/storecmp counts.
func BenchmarkPersist(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := map[bool]string{false: "off", true: "on"}[on]
		b.Run(name, func(b *testing.B) {
			persist = on
			defer func() { persist = false }()
			b.Run("Put", BenchmarkPut)
			b.Run("Mix", BenchmarkMix)
		})
	}
}

// newBenchTable returns a table for a benchmark, keeping a journal when
// persist is set.
func newBenchTable(b *testing.B, cfg correlate.Config) *correlate.Table {
	tab := newTable(b, cfg)
	if persist {
		j, _, err := journal.Open(b.TempDir(), tab, journal.Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			if err := j.Close(); err != nil {
				b.Error(err)
			}
		})
	}
	return tab
}

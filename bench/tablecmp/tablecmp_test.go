package tablecmp

import (
	"strings"
	"testing"
)

// TestRun runs the comparison small: toad must lose nothing and hold every
// key, and the markdown must carry every row.
func TestRun(t *testing.T) {
	cfg := Config{Keys: 20000, Writers: 2}
	results, err := Run(cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(results) != 2 {
		t.Fatalf("got %d results, want 2", len(results))
	}
	toad := results[0]
	if toad.Lost != 0 || toad.SetDropped != 0 || toad.Held != cfg.Keys {
		t.Errorf("toad: got Lost %d, SetDropped %d, Held %d; want 0, 0, %d", toad.Lost, toad.SetDropped, toad.Held, cfg.Keys)
	}
	for _, r := range results {
		if r.SetNs <= 0 || r.GetNs <= 0 {
			t.Errorf("%s: got SetNs %v, GetNs %v; want both positive", r.Name, r.SetNs, r.GetNs)
		}
	}
	var b strings.Builder
	if err := WriteMarkdown(&b, cfg, results); err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{"lost after concurrent inserts", "set, ns/op", "get, ns/op", "bytes per entry held"} {
		if !strings.Contains(b.String(), "| "+row) {
			t.Errorf("markdown lacks the row %q:\n%s", row, b.String())
		}
	}
}

func TestRunConfig(t *testing.T) {
	if _, err := Run(Config{Keys: -1}); err == nil {
		t.Errorf("Run with -1 keys: got no error, want one")
	}
}

const benchKeys = 1 << 20

// open makes a table with mk for keys keys, closed when b ends.
func open(b *testing.B, mk func(keys int) (subject, error), keys int) subject {
	b.Helper()
	tab, err := mk(keys)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(tab.close)
	return tab
}

// BenchmarkSet inserts new keys into each table, sized for benchKeys; past
// that, toad evicts its oldest and ristretto refuses or evicts as it likes.
func BenchmarkSet(b *testing.B) {
	for _, s := range subjects {
		b.Run(s.name, func(b *testing.B) {
			tab := open(b, s.mk, benchKeys)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				tab.set(n & (1<<24 - 1))
				n++
			}
		})
	}
}

// BenchmarkGet looks up held keys in each table, full, in scattered order.
func BenchmarkGet(b *testing.B) {
	for _, s := range subjects {
		b.Run(s.name, func(b *testing.B) {
			tab := open(b, s.mk, benchKeys)
			for n := range benchKeys {
				tab.set(n)
				if n%64 == 63 {
					tab.wait()
				}
			}
			tab.wait()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				tab.get(scatter(i, benchKeys))
				i++
			}
		})
	}
}

package caprate

import (
	"context"
	"testing"

	"github.com/toad-project/toad/internal/privtest"
)

// TestRun measures a small trial: every segment reaches the table, and a
// clean trial is reported as the best.
func TestRun(t *testing.T) {
	privtest.Require(t, "ip")
	res, err := Run(context.Background(), Config{Packets: 5000, Steps: 2, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped != "" {
		t.Fatalf("skipped: %s", res.Skipped)
	}
	if len(res.Trials) == 0 || res.Trials[0].Entries+int(res.Trials[0].Drops) < res.Trials[0].Sent {
		t.Fatalf("trials %+v: want every segment in the table or dropped", res.Trials)
	}
	if res.Best == nil {
		t.Fatalf("no clean trial among %+v", res.Trials)
	}
	if b := res.Best; b.Entries != b.Sent || b.Drops != 0 || b.Rate() <= 0 || b.CPU <= 0 {
		t.Errorf("best trial %+v: want every segment in the table, none dropped, a rate and a CPU time", *b)
	}
}

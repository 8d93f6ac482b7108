package kfilter

import (
	"context"
	"testing"

	"github.com/toad-project/toad/bench/replaycmp"
	"github.com/toad-project/toad/capture"
	"github.com/toad-project/toad/internal/privtest"
)

// TestRun sends a small mix through a live capture with toad's filter and
// with none: exactly the packets the program accepts arrive, nothing is
// dropped, and every mapping reaches the table.
func TestRun(t *testing.T) {
	privtest.Require(t, "ip")
	res, err := Run(context.Background(), Config{Mix: replaycmp.Mix{Conns: 100, Data: 0.9, Seed: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Filter != capture.FilterTOA || res[1].Filter != capture.FilterNone {
		t.Fatalf("got %+v, want a result for the toa filter, then none", res)
	}
	for _, r := range res {
		if r.Skipped != "" || r.Attached != r.Filter || r.Drops != 0 || r.Passed != uint64(r.Predicted) || !r.Agrees || r.Truth.N < 80 {
			t.Errorf("filter %v: %+v", r.Filter, r)
		}
	}
	if toa, none := res[0], res[1]; toa.Share() > 0.2 || none.Passed != uint64(none.Inbound) || toa.Sent != none.Sent {
		t.Errorf("toa passed %d of %d (%.1f%%), none %d of %d inbound; want a small share and every inbound packet",
			toa.Passed, toa.Sent, 100*toa.Share(), none.Passed, none.Inbound)
	}
}

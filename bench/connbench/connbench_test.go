package connbench

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	line := "BenchmarkConnections/dpvs/batch=30-2   \t     182\t  13496348 ns/op\t        77.87 bench-cpu-%\t      2223 conns/s\t        41.39 echo-cpu-µs/call"
	m := benchLine.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("%q not recognized", line)
	}
	c, err := parse(m)
	if err != nil {
		t.Fatal(err)
	}
	want := Case{Name: "dpvs/batch=30", Iterations: 182, Metrics: map[string]float64{
		"ns/op": 13496348, "bench-cpu-%": 77.87, "conns/s": 2223, "echo-cpu-µs/call": 41.39,
	}}
	if d := cmp.Diff(want, c); d != "" {
		t.Errorf("parse (-want +got):\n%s", d)
	}
	if benchLine.FindStringSubmatch("BenchmarkOther/x-2 1 2 ns/op") != nil {
		t.Error("another benchmark's line was taken")
	}
	// A benchmark without sub-benchmarks.
	line = "BenchmarkPreloadNginx-2   	    3000	        31.00 added-p50-µs	         1.008 conns/s-ratio"
	m = lineOf("BenchmarkPreloadNginx").FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("%q not recognized", line)
	}
	if c, err = parse(m); err != nil {
		t.Fatal(err)
	}
	want = Case{Name: "", Iterations: 3000, Metrics: map[string]float64{"added-p50-µs": 31, "conns/s-ratio": 1.008}}
	if d := cmp.Diff(want, c); d != "" {
		t.Errorf("parse (-want +got):\n%s", d)
	}
}

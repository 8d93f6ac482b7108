package main

import (
	"slices"
	"testing"
	"time"
)

func TestInts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		ok   bool
	}{
		{"", nil, true},
		{"10000,100k,1M", []int{10000, 100000, 1000000}, true},
		{"10_000, 20000", []int{10000, 20000}, true},
		{"0", nil, false},
		{"ten", nil, false},
		{"1,-2", nil, false},
	} {
		got, err := ints(tc.in)
		if (err == nil) != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("ints(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestDefaults(t *testing.T) {
	var full, quick, mixed config
	quick.Quick = true
	mixed.Quick, mixed.ReplayConns, mixed.ScaleSizes = true, 5000, []int{42}
	for _, c := range []*config{&full, &quick, &mixed} {
		c.defaults()
	}
	if full.Out != "." || len(full.ScaleSizes) != 4 || full.ScaleSizes[3] != 10_000_000 || full.APIPhase != 200*time.Millisecond {
		t.Errorf("full defaults: %+v", full)
	}
	if quick.Out != "out" || quick.Rounds != 1 || quick.ReplayConns >= full.ReplayConns {
		t.Errorf("quick defaults: %+v (the quick run must not write bench/RESULTS.md)", quick)
	}
	if mixed.ReplayConns != 5000 || !slices.Equal(mixed.ScaleSizes, []int{42}) || mixed.Rounds != 1 {
		t.Errorf("flags over quick defaults: %+v", mixed)
	}
}

func TestCommand(t *testing.T) {
	for _, tc := range []struct {
		c    config
		want string
	}{
		{config{args: []string{"-out", "."}}, "go run ./cmd/toadbench -out ."},
		{config{Label: "make bench", args: []string{"-label", "make bench", "-out", "."}}, "make bench    # go run ./cmd/toadbench -out ."},
		{config{Label: "x", args: []string{"--label=x", "-quick"}}, "x    # go run ./cmd/toadbench -quick"},
	} {
		if got := command(tc.c); got != tc.want {
			t.Errorf("command(%v) = %q, want %q", tc.c.args, got, tc.want)
		}
	}
}

// Command tablecmp compares toad's connection table with ristretto v2 and
// prints a markdown table: entries lost under concurrent inserts, ns per
// set and get, bytes per entry, and the ratios, all from the same run.
//
//	cd bench && go run ./cmd/tablecmp -keys 1000000 -writers 2
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/toad-project/toad/bench/tablecmp"
)

func main() {
	var cfg tablecmp.Config
	flag.IntVar(&cfg.Keys, "keys", 1_000_000, "distinct connections inserted in each phase")
	flag.IntVar(&cfg.Writers, "writers", 2, "goroutines inserting at once in the loss phase")
	flag.IntVar(&cfg.Rounds, "rounds", 1, "times each table is measured, in turns; the medians count")
	flag.Parse()
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "tablecmp:", err)
		os.Exit(1)
	}
}

func run(cfg tablecmp.Config) error {
	results, err := tablecmp.Run(cfg)
	if err != nil {
		return err
	}
	return tablecmp.WriteMarkdown(os.Stdout, cfg, results)
}

// Package report writes the results of the benchmark harness: RESULTS.md,
// with the figures of every comparison, the goals beside them and the
// machine they were measured on, and a chart of the scaling run.
//
// A Report is plain data: fill it and write it once. Its zero value writes
// a report that says nothing was measured.
package report

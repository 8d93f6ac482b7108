// Package cputime reads the CPU time the process has used, for the
// benchmarks that report work per CPU second.
package cputime

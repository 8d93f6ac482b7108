// Package cputime reads the CPU time this process has used, and on Linux
// another process's CPU time and how often its threads went to sleep, for
// the benchmarks that report work per CPU second and per connection.
package cputime

// Package replay answers questions about the connections of capture
// files: which real client was behind a proxy's 4-tuple, and when. It is
// the library behind toad replay.
//
// Run reads the files as one capture, in capture-time order whatever
// order they are named in (capture.ReplayFiles), keeps what the server
// received (capture.Incoming), follows every connection to its end
// (package lifetime) and writes each one the Query selects as soon as it
// ends: a table, or JSON Lines. Its memory follows the connections open
// at once, not the length of the capture, and nothing is dropped.
//
// Run may be called from several goroutines with different Configs. The
// zero Query selects every connection a TOA resolved.
package replay

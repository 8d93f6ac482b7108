// Package journal keeps a correlate.Table on disk as it changes, so that a
// crash (SIGKILL, an OOM kill, a panic) loses at most the last group of
// changes, and a restart answers as the table did.
//
// A journal directory holds a snapshot of the table (correlate's snapshot
// format) and a journal segment of the changes that followed it, both named
// by a generation number:
//
//	snapshot-GGGGGGGGGGGGGGGG   the table at the start of generation G
//	journal-GGGGGGGGGGGGGGGG    header, then change records, each with its CRC
//
// The table records its changes into per-shard buffers without blocking
// (correlate.Recorder); a writer goroutine drains them every Interval
// (10ms) and appends them to the segment in one write, fsync'd with
// Config.Sync. When the segment outgrows a small multiple of the snapshot,
// the journal compacts: it opens the next generation's segment, writes a
// fresh snapshot beside it while still appending every change to both
// segments, and once the snapshot is renamed into place removes the older
// generation. A clean Close compacts, so a clean stop leaves a snapshot and
// an empty segment.
//
// Open recovers: the newest intact snapshot, then its segment's records up
// to the first that is torn or fails its checksum (the rest is counted and
// never applied), loaded into the table the way a snapshot is. Closed
// connections come back closed with their close time, those whose linger
// ended do not come back, and keys a live capture already filled keep what
// it saw.
//
// When the disk fails (full, read-only, an I/O error) the journal warns
// through its logger (at once, then at most once per Config.WarnEvery),
// counts, drops the changes it cannot write and keeps the table serving
// from memory; every Config.RetryInterval it tries a compaction, whose
// snapshot holds what was dropped, and resumes when one succeeds. When a
// shard's buffer fills because the writer fell behind, the changes it
// drops are counted and a compaction follows at once.
//
// A Journal is safe for concurrent use. Its zero value is not usable; call
// Open.
package journal

// Package correlate is the connection table: it maps a connection's
// server-side 4-tuple (Key) to the real client its proxy named in a TOA,
// fed by decoded segments (Observe) and read by lookups.
//
// The table is sharded, each shard an open-addressing index over arenas of
// fixed-size, pointer-free slots (64 bytes for an IPv4 connection), so its
// memory is bounded by its capacity and the garbage collector never scans
// it. It never drops an entry it accepted except by the documented rules:
// a closing entry after its linger, an open one when the table (or, with
// keys hashing very unevenly, its shard) is full (closing entries go first,
// then the oldest; every eviction is counted) or idle with an IdleTimeout,
// and one whose key a new connection takes.
//
// A Table is safe for concurrent use. It has no goroutines: segments carry
// its clock and the owner calls Expire. Its zero value is not usable; call
// New. Lookups may wait for a key not yet present (a TOA that arrives with
// the handshake's last ACK). With Config.Barrier they ask the table's
// Source instead whether it has delivered every segment received before
// the call, since the TOA may be on its way and a proxy may have reused a
// closing entry's key for a connection not delivered yet; once it has,
// they answer at once, an absent key with ErrNotFound.
package correlate

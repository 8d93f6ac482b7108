package correlate

import (
	"fmt"
	"net/netip"
	"time"
)

// Defaults for a zero Config.
const (
	DefaultCapacity = 1 << 20
	DefaultShards   = 64
	DefaultLinger   = 60 * time.Second
)

// MaxCapacity is the largest Capacity a Table accepts.
const MaxCapacity = 1 << 30

// Config configures a Table. Its zero value is a table of DefaultCapacity
// entries that trusts every peer.
type Config struct {
	// Capacity is the most entries the table holds; 0 means
	// DefaultCapacity. When it is full, closing entries are evicted first,
	// then the oldest.
	Capacity int
	// Shards is how many independently locked parts the table has, a power
	// of two; 0 means DefaultShards.
	Shards int
	// Linger is how long a closing connection is still answered; 0 means
	// DefaultLinger.
	Linger time.Duration
	// IdleTimeout, when positive, lets Expire drop open entries that saw no
	// segment for that long. It costs a lock on every segment of every
	// known connection; 0 (the default) keeps open entries until they
	// close, however long they live.
	IdleTimeout time.Duration
	// Trusted are the proxy ranges whose TOAs are believed. Empty means
	// every peer is trusted, which Stats.AllTrusted reports.
	Trusted []netip.Prefix
	// Barrier makes lookups learn from the table's source (see Attach)
	// whether the table has caught up with them, rather than wait for a
	// key on the chance that it comes. A Lookup with a wait that does not
	// find an open entry asks the source to catch up with the moment of
	// the call (Source.Sync), then answers what the key holds: the entry
	// (a closing one too: it is then the key's current connection), or,
	// with none, ErrNotFound at once, without waiting out its wait. Should
	// the source not catch up within the wait, it answers ErrNotFound,
	// never a closing entry, which may be a previous connection's on a key
	// its proxy has reused. Until a source is attached, lookups wait for
	// their key as without Barrier, and answer a closing entry never.
	// Lookups without a wait, and lookups that find an open entry, answer
	// at once as without Barrier. Off (the default), lookups answer what
	// the table holds, or wait for their key: right for a table fed
	// directly or by a replay.
	Barrier bool
}

// Validate reports the first field of c out of its bounds, as a
// *ConfigError; zero fields take their defaults and are valid.
func (c Config) Validate() error {
	switch {
	case c.Capacity < 0:
		return &ConfigError{"Capacity", c.Capacity, fmt.Sprintf("0 (default %d) or more", DefaultCapacity)}
	case c.Capacity > MaxCapacity:
		return &ConfigError{"Capacity", c.Capacity, fmt.Sprintf("at most %d", MaxCapacity)}
	case c.Shards < 0 || c.Shards > 1<<16 || c.Shards&(c.Shards-1) != 0:
		return &ConfigError{"Shards", c.Shards, fmt.Sprintf("a power of two up to 65536, or 0 (default %d)", DefaultShards)}
	case c.Linger < 0:
		return &ConfigError{"Linger", c.Linger, fmt.Sprintf("0 (default %v) or more", DefaultLinger)}
	case c.IdleTimeout < 0:
		return &ConfigError{"IdleTimeout", c.IdleTimeout, "0 (never) or more"}
	}
	return nil
}

// ConfigError is a Config field out of its bounds.
type ConfigError struct {
	Field string // the field, such as "Capacity"
	Value any    // its value
	Want  string // what it takes
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("invalid Config.%s %v: want %s", e.Field, e.Value, e.Want)
}

// ConfigField returns the field's name, for callers that name their
// settings otherwise (toad serve's flags).
func (e *ConfigError) ConfigField() (field string, value any, want string) {
	return e.Field, e.Value, e.Want
}

package correlate

// ShardIndex returns the index of the shard holding k.
func (t *Table) ShardIndex(k Key) int {
	return int(t.seed.hash(&k) >> t.shift)
}

package correlate

// ShardIndex returns the index of the shard holding k.
func (t *Table) ShardIndex(k Key) int {
	var p pkey
	p.setKey(&k)
	return int(t.seed.hash(&p) >> t.shift)
}

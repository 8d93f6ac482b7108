package correlate

// ShardIndex returns the index of the shard holding k.
func (t *Table) ShardIndex(k Key) int {
	k = KeyOf(k.Peer, k.Local)
	p := pack(k.Peer, k.Local)
	return int(t.seed.hash(&p) >> t.shift)
}

package preload

// OnConnDone sets a function called after each library connection is
// gone, so that tests wait for the server to have read everything.
func (s *Server) OnConnDone(fn func()) { s.connDone = fn }

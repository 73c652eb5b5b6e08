package main

import (
	"bytes"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// dbProxy is a TCP proxy the test controls between linkbot and the shared
// PostgreSQL server: cut drops every connection through it and turns new
// ones away (a database restart, a network partition, a failover), restore
// lets them through again. The shared server itself is never touched:
// other tests use it.
type dbProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
	// dropReply, when set, is a reply the server sends that the client
	// never gets: the first chunk from the server containing it is not
	// passed on and the connection drops (the server did the work; the
	// client never hears how). It acts once, then clears itself.
	dropReply []byte
}

// dropNextReply arms dropReply with reply.
func (p *dbProxy) dropNextReply(reply []byte) {
	p.mu.Lock()
	p.dropReply = reply
	p.mu.Unlock()
}

// dropping reports whether chunk, from the server, is the armed reply to
// drop, and disarms it if so.
func (p *dbProxy) dropping(chunk []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dropReply == nil || !bytes.Contains(chunk, p.dropReply) {
		return false
	}
	p.dropReply = nil
	return true
}

// newDBProxy starts a proxy to the server in dbURL and returns it with
// dbURL pointed at it.
func newDBProxy(t testing.TB, dbURL string) (*dbProxy, string) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dbProxy{ln: ln, target: u.Host, conns: map[net.Conn]bool{}}
	t.Cleanup(p.close)
	go p.serve()
	u.Host = ln.Addr().String()
	return p, u.String()
}

func (p *dbProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close() // the server is "down": the connection ends at once
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[s] = true, true
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			if src == s {
				p.copyReplies(dst, src)
			} else {
				io.Copy(dst, src)
			}
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		go pipe(c, s)
		go pipe(s, c)
	}
}

// copyReplies copies the server's replies to the client until either side
// ends, or until the reply dropReply names comes (not passed on).
func (p *dbProxy) copyReplies(dst, src net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if p.dropping(buf[:n]) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cut drops every connection and refuses new ones until restore.
func (p *dbProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
}

// restore lets connections through again.
func (p *dbProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

func (p *dbProxy) close() {
	p.ln.Close()
	p.cut()
}

package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/store"
)

// The audit log is read over a unix socket beside the database file, never
// over the metrics listener: issue 7 found GET /audit answering anyone who
// reached :8080. The socket has the file's protection — mode 0600, owned
// by the user the bot runs as, who owns the database — so whoever can open
// it could read the file anyway, and `linkbot audit` keeps working while
// the bot holds the file's lock.

// auditSocketPath is where the running bot serves the audit log.
func auditSocketPath(dbPath string) string { return dbPath + ".sock" }

// Bounds of one audit read, the same from the file and over the socket.
const (
	defaultAuditSince = 24 * time.Hour
	defaultAuditLimit = 1000
	maxAuditLimit     = 100_000
)

// auditRequest is an audit query as `linkbot audit` resolves it (phone
// normalised, instance resolved to its alias and ID) and as it travels to
// the running bot.
type auditRequest struct {
	Since     time.Time
	Phone     string   // digits, country code first
	Instances []string // alias and ID of one instance
	Limit     int
}

func (r auditRequest) query() pairing.AuditQuery {
	return pairing.AuditQuery{Since: r.Since, Phone: r.Phone, Instances: r.Instances, Limit: r.Limit}
}

func (r auditRequest) values() url.Values {
	v := url.Values{"limit": {strconv.Itoa(r.Limit)}, "instance": r.Instances}
	if !r.Since.IsZero() {
		v.Set("since", strconv.FormatInt(r.Since.UnixNano(), 10))
	}
	if r.Phone != "" {
		v.Set("phone", r.Phone)
	}
	return v
}

// parseAuditRequest reads a request sent over the socket, with the bounds
// `linkbot audit` itself keeps: the socket gives nothing the file would not.
func parseAuditRequest(v url.Values) (auditRequest, error) {
	var r auditRequest
	if s := v.Get("since"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return r, errors.New("since must be unix nanoseconds")
		}
		r.Since = time.Unix(0, n)
	}
	r.Phone = v.Get("phone")
	if len(r.Phone) > 20 || !allDigits(r.Phone) {
		return r, errors.New("phone must be digits, country code first")
	}
	r.Instances = v["instance"]
	if len(r.Instances) > 2 {
		return r, errors.New("at most one instance (its alias and ID)")
	}
	for _, in := range r.Instances {
		if in == "" || len(in) > 100 {
			return r, errors.New("instance must be an alias or ID")
		}
	}
	r.Limit = defaultAuditLimit
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxAuditLimit {
			return r, fmt.Errorf("limit must be between 1 and %d", maxAuditLimit)
		}
		r.Limit = n
	}
	return r, nil
}

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// auditAnswer is the socket's answer: the events, oldest first, and
// whether the limit left older ones out.
type auditAnswer struct {
	Events []pairing.Event `json:"events"`
	More   bool            `json:"more"`
}

// auditHandler serves GET /audit and nothing else.
func auditHandler(db *store.DB, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /audit", func(w http.ResponseWriter, r *http.Request) {
		req, err := parseAuditRequest(r.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		events, more, err := db.Audit(r.Context(), req.query())
		if err != nil {
			log.Error("audit socket", "err", err)
			http.Error(w, "reading the audit log failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(auditAnswer{Events: events, More: more})
	})
	return mux
}

// serveAuditSocket serves the audit log on a unix socket at path until
// stop is called. The socket is created in a private (0700) directory
// beside path, under a name no longer than path (see privateSocketDir),
// set to 0600 and only then renamed into place, so nobody else can connect
// in between; the rename also replaces, atomically, a socket left by a
// crash (this process holds the database's lock, so no other bot can be
// using it). Anything at path that is not a socket is left alone and the
// bot runs without the socket. stop closes it and removes it.
func serveAuditSocket(path string, db *store.DB, log *slog.Logger) (stop func(), err error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("%s exists and is not a socket; move it away", path)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("%s is %d bytes long, but unix socket paths are limited to %d bytes: put LINKBOT_DB in a directory with a shorter path", path, len(path), maxSocketPath)
	}
	dir, err := privateSocketDir(path)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	private := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", private)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // it is removed by path below
	if err := os.Chmod(private, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Rename(private, path); err != nil {
		ln.Close()
		return nil, err
	}
	ours, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		return nil, err
	}
	stopServing := serveHTTP(ln, auditHandler(db, log), httpStopGrace, "audit socket", log)
	log.Info("audit socket up", "path", path)
	return func() {
		stopServing()
		if fi, err := os.Lstat(path); err == nil && os.SameFile(fi, ours) {
			os.Remove(path)
		}
	}, nil
}

// maxSocketPath is the longest path a unix socket can have on Linux:
// sun_path holds 108 bytes, the last one a NUL.
const maxSocketPath = 107

// privateSocketDir creates a directory only this user can enter, beside
// path, for the socket to be made in before it is renamed to path. Its
// socket path (DIR/.XXXX/s) is no longer than path itself, so any path that
// fits the socket limit works, whatever the database file is called.
func privateSocketDir(path string) (string, error) {
	// "." + name + "/s" takes the place of path's own base name (at least
	// "x.sock"), so the name has at least 3 random characters.
	n := min(len(filepath.Base(path))-3, 12)
	for range 100 {
		dir := filepath.Join(filepath.Dir(path), "."+strings.ToLower(rand.Text()[:n]))
		err := os.Mkdir(dir, 0o700)
		if !errors.Is(err, fs.ErrExist) {
			return dir, err
		}
	}
	return "", fmt.Errorf("no free temporary name beside %s", path)
}

// askRunningBot sends req to the bot serving the socket at path.
func askRunningBot(path string, req auditRequest) ([]pairing.Event, bool, error) {
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
	resp, err := client.Get("http://linkbot/audit?" + req.values().Encode())
	switch {
	case errors.Is(err, fs.ErrPermission):
		return nil, false, fmt.Errorf("%s: permission denied: only the user the bot runs as (or root) may read its audit log", path)
	case err != nil:
		return nil, false, fmt.Errorf("no bot answers on %s (is it an older linkbot, or could it not create the socket? its log says): %w", path, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 500))
		return nil, false, fmt.Errorf("the running bot refused the audit query: %s", msg)
	}
	var a auditAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return nil, false, fmt.Errorf("reading the audit log from the running bot: %w", err)
	}
	return a.Events, a.More, nil
}

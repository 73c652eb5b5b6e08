// Package store keeps linkbot's state in a single bbolt file: pairing-code
// attempts per phone and per user, pairing records, response_url budgets and
// the audit log. It implements pairing.Storage (the model is package
// pairing's; store imports pairing, never the reverse) and is the only
// package that imports bbolt.
package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/linkbot/linkbot/pairing"
)

var (
	bucketPhoneAttempts = []byte("attempts")
	bucketUserAttempts  = []byte("attempts_by_user")
	bucketPairings      = []byte("pairings")
	bucketLive          = []byte("live_by_instance")
	bucketResponseURLs  = []byte("response_urls")
	bucketAudit         = []byte("audit")
	bucketWatched       = []byte("watched")
	bucketDedupe        = []byte("dedupe")
	bucketViewClaims    = []byte("view_claims")
	bucketHolds         = []byte("slack_holds")
	allBuckets          = [][]byte{bucketPhoneAttempts, bucketUserAttempts, bucketPairings, bucketLive, bucketResponseURLs, bucketAudit, bucketWatched,
		bucketMeta, bucketAuditByPhone, bucketAuditByInstance, bucketDedupe, bucketViewClaims, bucketHolds}
)

// ErrLocked means another process holds the database file. bbolt takes an
// exclusive flock on open; without a timeout a second bot would hang forever.
var ErrLocked = errors.New("database file is in use by another process")

// ErrDamaged means the database file is truncated or overwritten: bbolt
// cannot read it, and only a backup brings its contents back.
var ErrDamaged = errors.New("database file is damaged")

// DB is the open database. It is safe for concurrent use.
type DB struct {
	bolt *bolt.DB
	log  *slog.Logger
	// lease is the ticker's leader lease (see Lead): in memory, since
	// bbolt's file lock lets only one process use the file at a time.
	lease leaderLease
	// edits counts the workspace's chat.update calls this minute (see
	// TakeEdit): in memory, for the same reason.
	edits editMinute
}

// Options tune Open. The zero value is a durable database that waits up to
// two seconds for the file lock.
type Options struct {
	LockTimeout time.Duration
	// NoSync skips fsync after each commit. Only for tests that do not care
	// about durability; production and the benchmarks keep it false.
	NoSync bool
	// ReadOnly opens the file for reading, sharing the lock with other readers.
	ReadOnly bool
	// Log receives warnings about damaged records that reads skip; nil
	// discards them.
	Log *slog.Logger
}

// Open opens (or creates, mode 0600) the bbolt file at path. A file bbolt
// cannot read (truncated, overwritten) is refused with ErrDamaged.
func Open(path string, opts Options) (*DB, error) {
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	var b *bolt.DB
	err := readingFile(path, func() (err error) {
		b, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, NoSync: opts.NoSync, ReadOnly: opts.ReadOnly})
		return err
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w (waited %s; is another linkbot running?)", path, ErrLocked, timeout)
	}
	if err == nil {
		err = readingFile(path, func() error { return sane(b, path) })
		if err != nil {
			b.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if !opts.ReadOnly {
		// bbolt applies the mode only when it creates the file.
		if err := os.Chmod(path, 0o600); err != nil {
			b.Close()
			return nil, fmt.Errorf("chmod %s: %w", path, err)
		}
		err = readingFile(path, func() error {
			return b.Update(func(tx *bolt.Tx) error {
				for _, name := range allBuckets {
					if _, err := tx.CreateBucketIfNotExists(name); err != nil {
						return err
					}
				}
				return watchUnsettled(tx)
			})
		})
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("create buckets in %s: %w", path, err)
		}
		if err := readingFile(path, func() error { return prepareAudit(b) }); err != nil {
			b.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	// Batch coalesces concurrent check-and-records into one fsync; a short
	// delay keeps a lone request fast.
	b.MaxBatchDelay = time.Millisecond
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &DB{bolt: b, log: log}, nil
}

// readingFile runs f, which reads the file at path through bbolt, and
// turns the ways bbolt reports a damaged file into ErrDamaged: its own
// errors for unreadable meta pages, its panics on pages that make no sense,
// and the fault (SIGBUS) of reading a page past the end of a truncated file
// through the memory map, which would otherwise kill the process with no
// way to recover. Any other panic (a bug in f's own code) goes on as a
// panic: telling the admin to restore a backup would be wrong. After a
// panic in bolt.Open its half-opened file stays locked by this process; it
// is about to exit with the error anyway.
func readingFile(path string, f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if !faultOrBboltPanic(r) {
				panic(r)
			}
			err = damaged(path, fmt.Sprint(r))
		}
	}()
	err = f()
	switch {
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch),
		err != nil && strings.Contains(err.Error(), "file size too small"): // bbolt v1.5.0 does not wrap this one
		return damaged(path, err.Error())
	}
	return err
}

// faultOrBboltPanic says whether the panic r, being recovered by the
// caller, is a memory fault (a read of the mapped file past its end) or was
// raised inside bbolt (its checks of a page, or a bad offset it read from
// one): the first frame below the panic that is not the runtime's.
func faultOrBboltPanic(r any) bool {
	if _, fault := r.(interface{ Addr() uintptr }); fault {
		return true
	}
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs)])
	panicking := false
	for {
		fr, more := frames.Next()
		switch {
		case fr.Function == "runtime.gopanic":
			panicking = true
		case panicking && !strings.HasPrefix(fr.Function, "runtime."):
			return strings.HasPrefix(fr.Function, "go.etcd.io/bbolt")
		}
		if !more {
			return false
		}
	}
}

// sane is a quick look for damage bbolt's Open does not notice: a file
// shorter than the pages its meta page counts (truncated: reading the
// missing pages would fault), and top-level buckets whose first and last
// pages do not parse. It reads a handful of pages, not the whole file
// (bbolt's tx.Check would, and a year of audit events is large).
func sane(b *bolt.DB, path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	return b.View(func(tx *bolt.Tx) error {
		if tx.Size() > info.Size() {
			return damaged(path, fmt.Sprintf("the file is %d bytes but its pages need %d: it was truncated", info.Size(), tx.Size()))
		}
		return tx.ForEach(func(_ []byte, bk *bolt.Bucket) error {
			c := bk.Cursor()
			c.First()
			c.Last()
			return nil
		})
	})
}

func damaged(path, cause string) error {
	return fmt.Errorf("%w (bbolt: %s): stop linkbot and restore %s from a backup, or move it aside to start over with "+
		"empty limits, pairings and audit log", ErrDamaged, cause, path)
}

// view, update and batch are bbolt's View, Update and Batch through
// readingFile. Open reads only a few pages of each bucket, so a bad page
// deeper in the file is met later; bbolt panics on it, and this turns the
// panic into ErrDamaged for the caller (the bot's request, its tick, its
// pruning, `linkbot audit`) instead of a crash. bbolt rolls the transaction
// back on the way out. A panic while committing a batch of Batch calls
// runs in bbolt's own goroutine and cannot be caught here.
//
// A transaction is never started for a ctx that is already done: the
// call returns ctx.Err() and changes nothing, as pairing.Storage promises.
// bbolt cannot cancel a transaction once started (nor would one that holds
// the only writer's lock for microseconds gain from it), so ctx is looked
// at only then.
func (db *DB) view(ctx context.Context, f func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return readingFile(db.bolt.Path(), func() error { return db.bolt.View(f) })
}

func (db *DB) update(ctx context.Context, f func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return readingFile(db.bolt.Path(), func() error { return db.bolt.Update(f) })
}

func (db *DB) batch(ctx context.Context, f func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return readingFile(db.bolt.Path(), func() error { return db.bolt.Batch(f) })
}

// Close releases the file lock.
func (db *DB) Close() error { return db.bolt.Close() }

// timeKey is key + 0x00 + big-endian unix nanos, so a cursor Seek finds the
// first entry of a time window and entries of one key sort by time.
func timeKey(key string, t time.Time) []byte {
	b := make([]byte, 0, len(key)+9)
	b = append(b, key...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint64(b, uint64(t.UnixNano()))
}

func keyTime(k []byte) time.Time {
	if len(k) < 8 {
		return time.Time{}
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(k[len(k)-8:])))
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

// watchUnsettled watches every request that has not settled. Versions
// before watching began at reserve time left such requests unwatched after
// a crash, and their messages at "Requesting…"; now the countdown ends them.
func watchUnsettled(tx *bolt.Tx) error {
	watched := tx.Bucket(bucketWatched)
	var ids [][]byte
	err := tx.Bucket(bucketPairings).ForEach(func(k, v []byte) error {
		var p pairing.Pairing
		if json.Unmarshal(v, &p) == nil && p.State == pairing.StateRequesting && watched.Get(k) == nil {
			ids = append(ids, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := watched.Put(id, nil); err != nil {
			return err
		}
	}
	return nil
}

// DB is the bbolt implementation of the service's storage.
var _ pairing.Storage = (*DB)(nil)

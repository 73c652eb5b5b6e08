package postgres

import (
	"context"
	"testing"

	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/store/postgres/pgtest"
	"github.com/linkbot/linkbot/store/storetest"
)

// openTest opens a store on a fresh schema of the test server, with the
// suite's injected clock standing in for the database's (CallerClock),
// closed when the test ends. It also returns the URL, to open the same
// data again.
func openTest(t *testing.T) (*DB, string) {
	t.Helper()
	url := pgtest.URL(t)
	db := mustOpen(t, url, Options{CallerClock: true})
	return db, url
}

func mustOpen(t testing.TB, url string, opts Options) *DB {
	t.Helper()
	db, err := Open(context.Background(), url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestConformance runs the storage contract against PostgreSQL.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		db, url := openTest(t)
		return storetest.Harness{
			Storage: db,
			Restart: func(t *testing.T) pairing.Storage {
				db.Close()
				db = mustOpen(t, url, Options{CallerClock: true})
				return db
			},
			StoredEvents: func(t *testing.T) []storetest.StoredEvent {
				return storedEvents(t, db)
			},
		}
	})
}

// storedEvents is every audit row as kept: its phone key, and the whole
// row as text (every column, so the suite sees anything that holds digits).
func storedEvents(t *testing.T, db *DB) []storetest.StoredEvent {
	t.Helper()
	rows, err := db.pool.Query(t.Context(), `SELECT coalesce(phone_key, ''), a::text FROM audit_events a ORDER BY at_ns, seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []storetest.StoredEvent
	for rows.Next() {
		var e storetest.StoredEvent
		if err := rows.Scan(&e.PhoneKey, &e.Raw); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

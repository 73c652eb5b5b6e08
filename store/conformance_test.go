package store

import (
	"encoding/json"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/store/storetest"
)

// TestConformance runs the storage contract against the bbolt store.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		path := filepath.Join(t.TempDir(), "linkbot.db")
		open := func(t *testing.T) *DB {
			db, err := Open(path, Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			return db
		}
		db := open(t)
		t.Cleanup(func() { db.Close() })
		return storetest.Harness{
			Storage: db,
			Restart: func(t *testing.T) pairing.Storage {
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
				db = open(t)
				return db
			},
			StoredEvents: func(t *testing.T) []storetest.StoredEvent {
				var out []storetest.StoredEvent
				err := db.bolt.View(func(tx *bolt.Tx) error {
					return tx.Bucket(bucketAudit).ForEach(func(_, v []byte) error {
						var e pairing.Event
						if err := json.Unmarshal(v, &e); err != nil {
							return err
						}
						out = append(out, storetest.StoredEvent{PhoneKey: e.PhoneKey, Raw: string(v)})
						return nil
					})
				})
				if err != nil {
					t.Fatal(err)
				}
				return out
			},
		}
	})
}
